// SPDX-License-Identifier: GPL-2.0-only
/*
 * The UAPI in use: send a QUERY to /dev/waferq0 twice, once with
 * write()/poll()/read() and once with WAFERQ_IOC_SUBMIT, then print the
 * counters. drivers/README.md quotes this file; tests/test_driver_build.py
 * compiles it with -Wall -Werror (natively and for ARMv7).
 *
 *   arm-linux-gnueabihf-gcc -Wall -O2 -Idrivers/include/uapi \
 *       -o example_submit drivers/tools/example_submit.c
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/waferq.h>

/* protocol/stream.py: magic "WQ", version 1, opcode QUERY. */
#define WQ_HEADER(op)	(0x5751u << 16 | 1u << 8 | (op))
#define WQ_OP_QUERY	0x01u

/* A request: header, payload length, tag, checksum (the sum of the rest). */
static void make_query(uint32_t msg[4], uint32_t tag)
{
	msg[0] = WQ_HEADER(WQ_OP_QUERY);
	msg[1] = 0;
	msg[2] = tag;
	msg[3] = msg[0] + msg[1] + msg[2];	/* words are little-endian on ARM */
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "/dev/waferq0";
	uint32_t msg[4], reply[256];	/* uint32_t: the 32-bit alignment DMA needs */
	struct waferq_submit sub;
	struct waferq_stats st;
	struct pollfd pfd;
	__u32 ms = 2000;
	ssize_t n;
	int fd;

	fd = open(path, O_RDWR);
	if (fd < 0) {
		/* EBUSY: another process (the board service?) has it open. */
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return 1;
	}
	if (ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, &ms) < 0)
		goto fail;

	/* One write() is one message; poll() says when the reply is in. */
	make_query(msg, 1);
	if (write(fd, msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		goto fail;
	pfd.fd = fd;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, ms) == 0) {
		fprintf(stderr, "no reply within %u ms\n", ms);
		ioctl(fd, WAFERQ_IOC_RESET);	/* drop the request, reset the core */
		close(fd);
		return 1;
	}
	n = read(fd, reply, sizeof(reply));	/* one read() is one reply */
	if (n < 0)
		goto fail;
	printf("read: %zd bytes, header 0x%08x\n", n, reply[0]);

	/* The same round trip in one call. */
	make_query(msg, 2);
	memset(&sub, 0, sizeof(sub));
	sub.tx_ptr = (uintptr_t)msg;
	sub.tx_len = sizeof(msg);
	sub.rx_ptr = (uintptr_t)reply;
	sub.rx_len = sizeof(reply);
	if (ioctl(fd, WAFERQ_IOC_SUBMIT, &sub) < 0)
		goto fail;
	printf("submit: %u bytes, tag %u\n", sub.reply_len, reply[2]);

	if (ioctl(fd, WAFERQ_IOC_GET_STATS, &st) < 0)
		goto fail;
	printf("sent %llu, received %llu, errors %llu, timeouts %llu\n",
	       (unsigned long long)st.tx_messages,
	       (unsigned long long)st.rx_messages,
	       (unsigned long long)st.errors, (unsigned long long)st.timeouts);
	close(fd);
	return 0;

fail:
	fprintf(stderr, "%s: %s\n", path, strerror(errno));
	close(fd);
	return 1;
}
