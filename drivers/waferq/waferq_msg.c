// SPDX-License-Identifier: GPL-2.0-only
/*
 * Accelerator message framing checks; see waferq_msg.h.
 *
 * Every check returns 0 or a negative errno, and on error sets *why to a
 * sentence for the log: -EMSGSIZE for a message longer than the core takes,
 * -EINVAL for every other framing error. The checksum is left to the core,
 * which answers a bad one with an ERROR reply.
 */
#include "waferq_msg.h"

/**
 * waferq_msg_word() - decode one little-endian word
 * @buf: message bytes
 * @index: word index
 *
 * Return: the word in CPU order.
 */
u32 waferq_msg_word(const unsigned char *buf, unsigned int index)
{
	const unsigned char *p = buf + (size_t)index * WAFERQ_WORD_BYTES;

	return (u32)p[0] | (u32)p[1] << 8 | (u32)p[2] << 16 | (u32)p[3] << 24;
}

/**
 * waferq_msg_check_size() - check a message length before reading it
 * @nbytes: message length in bytes
 * @why: set to the reason on error
 *
 * Return: 0, -EINVAL (not whole words, or too short) or -EMSGSIZE.
 */
int waferq_msg_check_size(size_t nbytes, const char **why)
{
	if (nbytes > WAFERQ_MSG_MAX_BYTES) {
		*why = "message is longer than the core accepts";
		return -EMSGSIZE;
	}
	if (nbytes % WAFERQ_WORD_BYTES) {
		*why = "length is not a whole number of 32-bit words";
		return -EINVAL;
	}
	if (nbytes < WAFERQ_MSG_MIN_BYTES) {
		*why = "message is shorter than its header and checksum";
		return -EINVAL;
	}
	return 0;
}

/**
 * waferq_msg_check() - check the framing of one whole message
 * @head: the first WAFERQ_MSG_HEAD_BYTES bytes of the message
 * @nbytes: length of the whole message in bytes
 * @why: set to the reason on error
 *
 * Checks the length, the magic, the version, and that the length word
 * matches @nbytes.
 *
 * Return: 0, -EINVAL or -EMSGSIZE.
 */
int waferq_msg_check(const unsigned char *head, size_t nbytes,
		     const char **why)
{
	u32 header, payload_words;
	int ret;

	ret = waferq_msg_check_size(nbytes, why);
	if (ret)
		return ret;

	header = waferq_msg_word(head, 0);
	if (header >> 16 != WQ_MAGIC) {
		*why = "bad magic in the header word";
		return -EINVAL;
	}
	if ((header >> 8 & 0xff) != WQ_VERSION) {
		*why = "unsupported protocol version";
		return -EINVAL;
	}

	/* nbytes is bounded above, so this cannot wrap. */
	payload_words = waferq_msg_word(head, 1);
	if (payload_words != nbytes / WAFERQ_WORD_BYTES -
			     WQ_HEADER_WORDS - WQ_TRAILER_WORDS) {
		*why = "length word does not match the message length";
		return -EINVAL;
	}
	return 0;
}

/**
 * waferq_msg_announced_bytes() - message length that the length word implies
 * @head: the first WAFERQ_MSG_HEAD_BYTES bytes of the message
 *
 * Return: the length in bytes, or 0 when it exceeds WAFERQ_MSG_MAX_BYTES.
 */
size_t waferq_msg_announced_bytes(const unsigned char *head)
{
	u32 payload_words = waferq_msg_word(head, 1);

	if (payload_words > WQ_MAX_MESSAGE_WORDS - WQ_HEADER_WORDS -
			    WQ_TRAILER_WORDS)
		return 0;
	return ((size_t)payload_words + WQ_HEADER_WORDS + WQ_TRAILER_WORDS) *
	       WAFERQ_WORD_BYTES;
}
