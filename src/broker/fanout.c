/* The one delivery loop: rooms' sessions and tasks' subscribers. */
#include "broker_int.h"

void fanout(void *const *v, size_t size, const int *n,
	    void (*one)(void *elem, void *arg), void *arg)
{
	for (int i = 0; i < *n;) {
		char *e = (char *)*v + (size_t)i * size;
		struct session *s = *(struct session **)e;

		one(e, arg);
		/* The array may have lost this element (or one before it);
		 * then the slot holds the next one. */
		e = (char *)*v + (size_t)i * size;
		if (i < *n && *(struct session **)e == s)
			i++;
	}
}
