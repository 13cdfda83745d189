/* SPDX-License-Identifier: GPL-2.0-only WITH Linux-syscall-note */
/*
 * waferq accelerator character device: user-space API.
 *
 * /dev/waferq<N> carries accelerator messages (protocol/stream.py): one
 * write() sends one whole message, one read() returns one whole reply, and
 * poll() reports EPOLLIN once a reply is ready. The ioctls below add a reset,
 * statistics, the reply timeout, and a submit-and-wait round trip.
 *
 * Only fixed-width types: the same layout on 32-bit ARM and 64-bit hosts.
 * protocol/ioctl.py is the Python side; tests compare it with this header.
 */
#ifndef _UAPI_LINUX_WAFERQ_H
#define _UAPI_LINUX_WAFERQ_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * ioctl type byte. 0xBD is free in Documentation/userspace-api/ioctl/
 * ioctl-number.rst of v6.1 and v6.12 (0xB7, used before, is nsfs's).
 */
#define WAFERQ_IOC_MAGIC	0xBD

/*
 * Version of this interface (WAFERQ_IOC_GET_API_VERSION). 2: type 0xBD,
 * GET_API_VERSION, -ECANCELED for a request a RESET took away.
 */
#define WAFERQ_API_VERSION	2

/**
 * struct waferq_stats - counters since probe (RESET does not clear them)
 * @tx_messages: requests sent to the accelerator (MM2S)
 * @tx_bytes: bytes of those requests
 * @rx_messages: replies handed to user space (S2MM)
 * @rx_bytes: bytes of those replies
 * @errors: rejected messages and failed DMA transfers
 * @timeouts: waits that ran past the timeout
 */
struct waferq_stats {
	__u64 tx_messages;
	__u64 tx_bytes;
	__u64 rx_messages;
	__u64 rx_bytes;
	__u64 errors;
	__u64 timeouts;
};

/**
 * struct waferq_submit - one request/reply round trip (WAFERQ_IOC_SUBMIT)
 * @tx_ptr: user address of the request message (32-bit aligned)
 * @rx_ptr: user address of the buffer for the reply
 * @tx_len: request length in bytes, a whole message
 * @rx_len: size of the reply buffer in bytes
 * @reply_len: out: length of the reply in bytes
 * @reserved: must be zero
 */
struct waferq_submit {
	__u64 tx_ptr;
	__u64 rx_ptr;
	__u32 tx_len;
	__u32 rx_len;
	__u32 reply_len;
	__u32 reserved;
};

/* Abort what is in flight, drop a pending reply, soft-reset the core. */
#define WAFERQ_IOC_RESET	_IO(WAFERQ_IOC_MAGIC, 0)
/* Read the counters. */
#define WAFERQ_IOC_GET_STATS	_IOR(WAFERQ_IOC_MAGIC, 1, struct waferq_stats)
/* Set the timeout of every wait, in milliseconds (1 .. 600000). */
#define WAFERQ_IOC_SET_TIMEOUT	_IOW(WAFERQ_IOC_MAGIC, 2, __u32)
/* Send one request and wait for its reply. */
#define WAFERQ_IOC_SUBMIT	_IOWR(WAFERQ_IOC_MAGIC, 3, struct waferq_submit)
/* Read WAFERQ_API_VERSION as the driver was built with it. */
#define WAFERQ_IOC_GET_API_VERSION	_IOR(WAFERQ_IOC_MAGIC, 4, __u32)

/* The highest ioctl number above. */
#define WAFERQ_IOC_MAXNR	4

/* Bounds of WAFERQ_IOC_SET_TIMEOUT. */
#define WAFERQ_TIMEOUT_MIN_MS	1
#define WAFERQ_TIMEOUT_MAX_MS	600000

#endif /* _UAPI_LINUX_WAFERQ_H */
