// SPDX-License-Identifier: GPL-2.0-only
/* The QEMU guest's cases on /dev/waferq0 itself: messages, signals, resets. */
#include "guest.h"

int t_roundtrip(void)
{
	struct waferq_stats st;
	__u32 v = 0, ms = 2000;
	int fd = open_dev(), n;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(!ioctl(fd, WAFERQ_IOC_GET_API_VERSION, &v) && v == WAFERQ_API_VERSION,
	      "API version %u", v);
	CHECK(!ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, &ms), "SET_TIMEOUT");
	ms = 0;
	CHECK(ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, &ms) && errno == EINVAL, "timeout 0 taken");
	CHECK(ioctl(fd, _IO(WAFERQ_IOC_MAGIC, 9)) && errno == ENOTTY, "bad ioctl taken");
	CHECK(read(fd, r, sizeof(r)) < 0 && errno == ENOMSG, "read with nothing sent");
	CHECK(!query(fd, 1), "write: %s", strerror(errno));
	n = reply(fd, 0x81, 1, r, sizeof(r));
	CHECK(n == 56, "QUERY reply is %d bytes", n);
	CHECK(r[3] == TOPOLOGY, "topology %#x", r[3]);
	CHECK(!ioctl(fd, WAFERQ_IOC_GET_STATS, &st), "GET_STATS");
	CHECK(st.tx_messages == 1 && st.rx_messages == 1 && st.rx_bytes == 56,
	      "stats %llu %llu %llu", st.tx_messages, st.rx_messages, st.rx_bytes);
	close(fd);
	return 0;
}

/* Defect 1: an abort must leave both channels with interrupts. */
int t_abort_then_next(void)
{
	long resets = read_num(PARAM "soft_resets");
	__u32 ms = 500;
	int fd = open_dev();

	CHECK(fd >= 0, "open: %s", strerror(errno));
	ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, &ms);	/* only for speed */
	knob("drop", "1");
	CHECK(!query(fd, 2), "write: %s", strerror(errno));
	CHECK(read(fd, r, sizeof(r)) < 0 && errno == ETIMEDOUT, "no ETIMEDOUT: %s",
	      strerror(errno));
	CHECK(read_num(PARAM "soft_resets") > resets, "the timeout did not soft-reset the core");
	CHECK(!query(fd, 3), "write after a timeout: %s", strerror(errno));
	CHECK(reply(fd, 0x81, 3, r, sizeof(r)) > 0, "after a timeout: %s", why);
	/* close with a reply in flight, reopen, write */
	knob("hold_reply", "1");
	CHECK(!query(fd, 4), "write: %s", strerror(errno));
	close(fd);
	knob("hold_reply", "0");
	fd = open_dev();
	CHECK(fd >= 0, "reopen: %s", strerror(errno));
	CHECK(!query(fd, 5), "write after close: %s", strerror(errno));
	CHECK(reply(fd, 0x81, 5, r, sizeof(r)) > 0, "after close/reopen: %s", why);
	close(fd);
	return 0;
}

int t_late_reply(void)
{
	int fd = open_dev();

	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(!query(fd, 10) && reply(fd, 0x81, 10, r, sizeof(r)) > 0, "first: %s", why);
	knob("late_reply", "1");
	CHECK(!query(fd, 11), "write: %s", strerror(errno));
	CHECK(reply(fd, 0x81, 11, r, sizeof(r)) > 0, "%s", why);
	CHECK(strstr(kernel_log(), "dropped a late"), "no log line for the late reply");
	close(fd);
	return 0;
}

int t_signal_during_read(void)
{
	struct sigaction sa = { .sa_handler = on_sig };
	pid_t me = getpid(), child;
	int fd = open_dev(), st;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	sigaction(SIGUSR1, &sa, NULL);	/* no SA_RESTART */
	knob("hold_reply", "1");
	CHECK(!query(fd, 12), "write: %s", strerror(errno));
	child = spawn();
	if (!child)
		_exit(wait_wchan(me) ? 1 : kill(me, SIGUSR1) ? 2 : 0);
	sigs = 0;
	CHECK(read(fd, r, sizeof(r)) < 0 && errno == EINTR, "read not interrupted: %s",
	      strerror(errno));
	waitpid(child, &st, 0);
	CHECK(sigs == 1, "signal handler ran %d times", sigs);
	knob("hold_reply", "0");
	CHECK(reply(fd, 0x81, 12, r, sizeof(r)) > 0, "reply kept after EINTR: %s", why);
	close(fd);
	return 0;
}

/* Defect 4: a signal must not cut a message in the middle. */
int t_signal_during_send(void)
{
	struct sigaction sa = { .sa_handler = on_sig };
	pid_t me = getpid(), child;
	uint32_t m[4];
	ssize_t n;
	int fd = open_dev(), st;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	sigaction(SIGUSR1, &sa, NULL);
	knob("stall_tx", "1");
	child = spawn();
	if (!child) {
		int bad = wait_wchan(me) || kill(me, SIGUSR1);

		bad |= signal_pending_in(me);
		knob("stall_tx", "0");
		_exit(bad);
	}
	sigs = 0;
	n = write(fd, m, msg(m, 1, 13, NULL, 0));
	waitpid(child, &st, 0);
	knob("stall_tx", "0");
	CHECK(n == 16, "write returned %zd (%s)", n, n < 0 ? strerror(errno) : "");
	CHECK(WIFEXITED(st) && !WEXITSTATUS(st), "the signal was not held pending during the send");
	CHECK(sigs == 1, "signal handler ran %d times", sigs);
	CHECK(reply(fd, 0x81, 13, r, sizeof(r)) > 0, "%s", why);
	close(fd);
	return 0;
}

int t_two_openers(void)
{
	int fd = open_dev(), fd2;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	fd2 = open(DEV, O_RDWR);
	CHECK(fd2 < 0 && errno == EBUSY, "second open: %d %s", fd2, strerror(errno));
	close(fd);
	return 0;
}

int t_submit_and_error(void)
{
	struct waferq_submit s = { 0 };
	uint32_t m[4];
	int fd = open_dev();

	CHECK(fd >= 0, "open: %s", strerror(errno));
	s.tx_ptr = (uintptr_t)m;
	s.rx_ptr = (uintptr_t)r;
	s.tx_len = msg(m, 1, 14, NULL, 0);
	s.rx_len = sizeof(r);
	CHECK(!ioctl(fd, WAFERQ_IOC_SUBMIT, &s), "SUBMIT: %s", strerror(errno));
	CHECK(s.reply_len == 56 && r[2] == 14 && (r[0] & 0xff) == 0x81, "SUBMIT reply %u tag %u",
	      s.reply_len, r[2]);
	/* A well-framed request with an unknown opcode: the core's ERROR. */
	CHECK(write(fd, m, msg(m, 0x7, 15, NULL, 0)) == 16, "write: %s", strerror(errno));
	CHECK(reply(fd, 0xff, 15, r, sizeof(r)) == 24 && r[3] == 4 && r[4] == 7,
	      "ERROR reply: %s code %u detail %u", why, r[3], r[4]);
	/* A bad magic never reaches the DMA. */
	m[0] = 0x12340101;
	CHECK(write(fd, m, 16) < 0 && errno == EINVAL, "bad magic accepted");
	close(fd);
	return 0;
}

/* Defect 3: 4 MiB requests, contiguous and scattered. */
int t_four_mib(void)
{
	int fd = open_dev(), mfd = open("/dev/waferq_testonly", O_RDWR), n;
	uint32_t *w, sum = 0, i, px[16];
	ssize_t got;

	CHECK(fd >= 0 && mfd >= 0, "open: %s", strerror(errno));
	w = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	CHECK(w != MAP_FAILED, "mmap contiguous: %s", strerror(errno));
	for (i = 0; i < BIG / 4 - 4; i++)
		px[0] = w[3 + i] = i * 2654435761u, sum += px[0];
	w[0] = WQ_MAGIC << 16 | WQ_VERSION << 8 | WQ_OP_LOAD_WEIGHTS;
	w[1] = BIG / 4 - 4;
	w[2] = 20;
	w[BIG / 4 - 1] = w[0] + w[1] + w[2] + sum;
	got = write(fd, w, BIG);
	CHECK(got == BIG, "4 MiB contiguous write: %zd %s", got, strerror(errno));
	n = reply(fd, 0x82, 20, r, sizeof(r));
	CHECK(n == 20 && r[3] == sum, "LOAD_WEIGHTS checksum %#x, want %#x (%s)", r[3], sum, why);
	munmap(w, BIG);

	/* The same pages in reverse order: no two adjacent, over the pool. */
	w = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 4096);
	CHECK(w != MAP_FAILED, "mmap reversed: %s", strerror(errno));
	msg(w, 2, 21, NULL, BIG / 4 - 4);
	got = write(fd, w, BIG);
	CHECK(got < 0 && errno == EMSGSIZE, "scattered 4 MiB: %zd %s, want EMSGSIZE", got,
	      strerror(errno));
	CHECK(strstr(kernel_log(), "memory segments"), "no log line for EMSGSIZE");
	munmap(w, BIG);
	close(mfd);

	/* Anonymous memory: sent whole, or refused as too scattered, never ENOMEM. */
	w = malloc(BIG);
	CHECK(w, "malloc");
	msg(w, 2, 22, NULL, BIG / 4 - 4);
	got = write(fd, w, BIG);
	CHECK(got == BIG || (got < 0 && errno == EMSGSIZE), "malloc'd 4 MiB: %s", strerror(errno));
	if (got == BIG)
		CHECK(reply(fd, 0x82, 22, r, sizeof(r)) > 0, "%s", why);
	free(w);

	/* INFER on the model's 8x8 image: logit k sums pixels i % 4 == k. */
	for (i = 0; i < 16; i++)
		px[i] = 0x01020304u * (i + 1);
	CHECK(write(fd, r, msg(r, 3, 23, px, 16)) == 80, "INFER write: %s", strerror(errno));
	CHECK(reply(fd, 0x83, 23, r, sizeof(r)) == 36, "INFER: %s", why);
	CHECK(r[3] == 0 && r[4] == 544 && r[7] == 136, "INFER class %u logits %u..%u", r[3], r[4], r[7]);
	close(fd);
	return 0;
}

/* Defect 5: a receive that filled nothing is an error, not end of file. */
int t_read_error_not_eof(void)
{
	int fd = open_dev();
	ssize_t n;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	knob("bogus_residue", "1");
	CHECK(!query(fd, 30), "write: %s", strerror(errno));
	errno = 0;
	n = read(fd, r, sizeof(r));
	CHECK(n < 0 && errno == EIO, "read returned %zd (%s), want -1 EIO", n, strerror(errno));
	CHECK(!query(fd, 31) && reply(fd, 0x81, 31, r, sizeof(r)) > 0, "next: %s", why);
	knob("fail_tx", "1");
	CHECK(query(fd, 32) && errno == EIO, "failed MM2S: %s", strerror(errno));
	CHECK(strstr(kernel_log(), "MM2S error"), "MM2S failure not named in the log");
	CHECK(!query(fd, 33) && reply(fd, 0x81, 33, r, sizeof(r)) > 0, "after MM2S error: %s", why);
	close(fd);
	return 0;
}

/* Defect 5: RESET does not wait for a blocked reader. */
int t_reset_while_reading(void)
{
	__u32 ms = 60000;
	pid_t child;
	int fd = open_dev(), st;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(!ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, &ms), "SET_TIMEOUT");
	knob("hold_reply", "1");
	CHECK(!query(fd, 40), "write: %s", strerror(errno));
	child = blocked_reader(fd, ECANCELED);
	CHECK(child > 0, "reader never blocked");
	CHECK(!ioctl(fd, WAFERQ_IOC_RESET), "RESET: %s", strerror(errno));
	waitpid(child, &st, 0);
	knob("hold_reply", "0");
	CHECK(WIFEXITED(st) && !WEXITSTATUS(st), "the reader did not get ECANCELED");
	CHECK(!query(fd, 41) && reply(fd, 0x81, 41, r, sizeof(r)) > 0, "after RESET: %s", why);
	close(fd);
	return 0;
}
