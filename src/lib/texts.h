/*
 * Answers both programs give in a dialect's own words, spelled once so that the pool and
 * the push daemon cannot drift apart.
 */
#ifndef AICHATD_TEXTS_H
#define AICHATD_TEXTS_H

/* workflow's 500 for a send whose run failed or timed out, "send failed: <reason>": the
 * pool's synchronous send and the daemon's stream (a printf format; %s: the reason) */
#define TEXT_WORKFLOW_SEND_FAILED "发送消息失败: %s"

#endif
