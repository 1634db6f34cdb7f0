/* the providers' names (src/lib/provider.c) and the daemon's table of them (src/push/llm.c) */
#include <stdlib.h>

#include "unit.h"
#include "rc.h"
#include "provider.h"
#include "llm.h"

void
t_provider(void)
{
	char out[64], err[ERR_LEN];
	int i, rows = 1;
	char *a, *b;

	/* every name found again, and nothing else */
	for (i = 0; i < PROVIDER_COUNT; i++)
		CHECK(provider_find(provider_name(i)) == i);
	CHECK(provider_find("openai") == PROVIDER_OPENAI);
	CHECK(provider_known("n8n") && provider_known("builtin"));
	CHECK(!provider_known("OpenAI") && !provider_known("n8n ") && !provider_known("") &&
	      !provider_known(NULL));
	CHECK(provider_name(PROVIDER_COUNT) == NULL);
	CHECK_STR(provider_name(PROVIDER_DEFAULT), "builtin");

	/* the lists the settings and the v1 dialect print */
	CHECK_STR(provider_list(out, sizeof(out), ", ", " or "), "builtin, openai or n8n");
	CHECK_STR(provider_list(out, sizeof(out), "、", " 或 "), "builtin、openai 或 n8n");
	CHECK_STR(provider_list(out, 12, ", ", " or "), "builtin, op");
	CHECK_STR(provider_list(out, 9, "、", " 或 "), "builtin"); /* never half a character */

	/* the daemon's table: a row per name, at its place, with the flags the runs rely on */
	CHECK(llm_check(err) == RC_OK);
	for (i = 0; i < PROVIDER_COUNT; i++) {
		const struct llm_provider *p = llm_provider_find(provider_name(i));
		if (!p || p->id != (enum provider)i || !p->start || !p->release ||
		    p->call_size == 0)
			rows = 0;
	}
	CHECK(rows);
	CHECK(llm_wants_history("openai") && !llm_wants_history("n8n") &&
	      !llm_wants_history("builtin"));
	CHECK(llm_provider_find("n8n")->streams_raw && !llm_provider_find("openai")->streams_raw &&
	      !llm_provider_find("builtin")->streams_raw);
	CHECK(llm_provider_find("builtin")->transport == NULL);
	CHECK(llm_provider_find("openai")->transport &&
	      llm_provider_find("openai")->transport == llm_provider_find("n8n")->transport);
	/* a name with no row (an older database's) is made by the default provider */
	CHECK(llm_provider_find("gpt")->id == PROVIDER_DEFAULT);
	CHECK(llm_provider_find(NULL)->id == PROVIDER_DEFAULT);

	/* builtin's reply: deterministic, quoting the message */
	a = llm_builtin_reply("天气如何？");
	b = llm_builtin_reply("天气如何？");
	CHECK(a && b && strcmp(a, b) == 0 && strstr(a, "「天气如何？」") && strstr(a, "共 5 个字符"));
	free(a);
	free(b);
}
