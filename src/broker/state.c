/* The broker's state: one instance, defined apart from every function so
 * that the files sharing it call each other only downward. */
#include "broker_int.h"

struct broker bk;
