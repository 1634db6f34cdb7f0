/* HS256 tokens: good, expired, not yet valid, wrong key, tampered, alg none */
#include <stdlib.h>
#include <time.h>

#include "unit.h"
#include "rc.h"
#include "token.h"

void
t_token(void)
{
	const char *secret = "0123456789abcdef-secret", *why;
	char sub[TOKEN_SUB_MAX + 1];
	int admin = -1;
	int64_t now = (int64_t)time(NULL);
	char *tok = token_mint(secret, "alice", "admin", 3600), *bad;

	CHECK(tok != NULL);
	CHECK(token_verify(tok, secret, now, sub, &admin, &why) == RC_OK);
	CHECK_STR(sub, "alice");
	CHECK(admin == 1);
	/* expired an hour later */
	CHECK(token_verify(tok, secret, now + 7200, sub, &admin, &why) == RC_DENIED);
	/* another key */
	CHECK(token_verify(tok, "another-secret-of-16+", now, sub, &admin, &why) == RC_DENIED);
	/* a flipped byte in the signature */
	bad = strdup(tok);
	bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'A' ? 'B' : 'A';
	CHECK(token_verify(bad, secret, now, sub, &admin, &why) == RC_DENIED);
	free(bad);
	free(tok);

	tok = token_mint(secret, "bob", NULL, 0);
	CHECK(token_verify(tok, secret, now, sub, &admin, &why) == RC_OK);
	CHECK_STR(sub, "bob");
	CHECK(admin == 0);
	free(tok);

	/* alg none, unsigned: {"alg":"none","typ":"JWT"}.{"sub":"mallory","role":"admin"}. */
	CHECK(token_verify("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
			  "eyJzdWIiOiJtYWxsb3J5Iiwicm9sZSI6ImFkbWluIn0.",
			  secret, now, sub, &admin, &why) == RC_DENIED);
	CHECK(token_verify("", secret, now, sub, &admin, &why) == RC_DENIED);
	CHECK(token_verify("a.b.c", secret, now, sub, &admin, &why) == RC_DENIED);
	CHECK(token_verify("not a token at all", secret, now, sub, &admin, &why) == RC_DENIED);

	/* the Bearer scheme, in any case, with spaces around it */
	CHECK_STR(token_bearer("Bearer abc"), "abc");
	CHECK_STR(token_bearer("  bearer   abc"), "abc");
	CHECK_STR(token_bearer("BEARER x.y.z"), "x.y.z");
	CHECK(token_bearer("Basic abc") == NULL);
	CHECK(token_bearer("Bearerabc") == NULL);
	CHECK(token_bearer("") == NULL);
}
