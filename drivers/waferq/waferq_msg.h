/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Accelerator message framing checks (protocol/stream.py).
 *
 * Pure functions on bytes: no kernel API, so waferq_msg.c also compiles in
 * user space for the unit tests. The shim below is the only difference.
 * Words are little-endian on the wire; they are decoded byte by byte, so the
 * code does not depend on the CPU's byte order.
 */
#ifndef _WAFERQ_MSG_H
#define _WAFERQ_MSG_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/types.h>
#else
#include <errno.h>
#include <stddef.h>
/* unsigned int is 32 bits on every Linux ABI. */
typedef unsigned int u32;
#endif

/* Generated from protocol/stream.py by protocol/codegen.py at build time. */
#include "wq_stream_format.h"

#define WAFERQ_WORD_BYTES	4
/* Header words (header, length, tag) in bytes. */
#define WAFERQ_MSG_HEAD_BYTES	(WQ_HEADER_WORDS * WAFERQ_WORD_BYTES)
/* Shortest message: header words and the checksum, no payload. */
#define WAFERQ_MSG_MIN_BYTES \
	((WQ_HEADER_WORDS + WQ_TRAILER_WORDS) * WAFERQ_WORD_BYTES)
/* Longest message the core accepts. */
#define WAFERQ_MSG_MAX_BYTES	(WQ_MAX_MESSAGE_WORDS * WAFERQ_WORD_BYTES)

u32 waferq_msg_word(const unsigned char *buf, unsigned int index);
int waferq_msg_check_size(size_t nbytes, const char **why);
int waferq_msg_check(const unsigned char *head, size_t nbytes,
		     const char **why);
size_t waferq_msg_announced_bytes(const unsigned char *head);

#endif /* _WAFERQ_MSG_H */
