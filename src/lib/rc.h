/* The result vocabulary every module passes up unchanged. */
#ifndef AICHATD_RC_H
#define AICHATD_RC_H

enum rc {
	RC_OK = 0,
	RC_ERR = -1,      /* failed; the error text is in the caller's err buffer */
	RC_NOTFOUND = -2, /* no such row, or not visible to this caller */
	RC_NOMEM = -3,    /* an allocation or a size cap failed */
	RC_CONFLICT = -4, /* a uniqueness or state conflict */
	RC_DENIED = -5,   /* the caller may not do this */
	RC_UNAVAIL = -6   /* a process this depends on (the push daemon) is not there */
};

#define ERR_LEN 256

#endif
