/* The connection layer's state: one instance, defined apart from every
 * function so that its files call each other only downward. */
#include "conn_int.h"

struct conns cs;
