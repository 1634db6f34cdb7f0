/* FNV-1a (see hash.h), as Fowler, Noll and Vo give it: offset basis 2166136261, prime
 * 16777619. */
#include "hash.h"

uint32_t
hash_str(const char *s)
{
	uint32_t h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h;
}
