// SPDX-License-Identifier: GPL-2.0-only
/*
 * /init of the QEMU test guest (tests/qemu/run.sh): loads the TEST-ONLY DMA
 * model and the real waferq module, drives /dev/waferq0 through every case
 * of drivers/README.md "What ran in QEMU", checks the kernel log, prints
 * "PASS name" / "FAIL name: why" and "N passed, M failed", and powers off.
 * Static, no libc beyond the C library: the initramfs holds only this.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/waferq.h>

#include "wq_stream_format.h"	/* generated from protocol/stream.py by drivers/build.sh */

#define DEV "/dev/waferq0"
#define PARAM "/sys/module/waferq_testonly_dma/parameters/"
#define TOPOLOGY 0x1234abcdu
#define BIG (4u << 20)

static int passed, failed;
static volatile int sigs;
static char why[256];

static int fail(const char *fmt, ...)
{
	char buf[sizeof(why)];
	va_list ap;

	/* via buf: the arguments may include why itself */
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	memcpy(why, buf, sizeof(why));
	return -1;
}

#define CHECK(c, ...) do { if (!(c)) return fail(__VA_ARGS__); } while (0)

static void on_sig(int s) { (void)s; sigs++; }

static void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY), n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -1 : 0;
}

static long read_num(const char *path)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return -1;
	if (read(fd, buf, sizeof(buf) - 1) < 0)
		buf[0] = 0;
	close(fd);
	return strtol(buf, NULL, 0);
}

static void knob(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), PARAM "%s", name);
	if (write_file(path, val))
		printf("cannot set %s\n", path);
}

/* The kernel log since boot, into a static buffer. */
static char klog[1 << 20];

static const char *kernel_log(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	size_t len = 0;
	ssize_t n;

	klog[0] = 0;
	if (fd < 0)
		return klog;
	while (len < sizeof(klog) - 1024 &&
	       (n = read(fd, klog + len, 1023)) > 0)
		len += n;
	klog[len] = 0;
	close(fd);
	return klog;
}

static int insmod(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY), ret;

	if (fd < 0)
		return -1;
	ret = syscall(SYS_finit_module, fd, params, 0);
	close(fd);
	return ret;
}

static int rmmod(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK);
}

/* Hang guard only: the node appears within moments. */
static int open_dev(void)
{
	int i, fd;

	for (i = 0; i < 10000; i++) {
		fd = open(DEV, O_RDWR);
		if (fd >= 0 || errno != ENOENT)
			return fd;
		sleep_ms(1);
	}
	return -1;
}

/* A whole message: header, length, tag, payload, checksum. */
static size_t msg(uint32_t *w, unsigned int op, uint32_t tag,
		  const uint32_t *p, uint32_t n)
{
	uint32_t i, sum;

	w[0] = WQ_MAGIC << 16 | WQ_VERSION << 8 | op;
	w[1] = n;
	w[2] = tag;
	for (i = 0; i < n; i++)
		w[3 + i] = p ? p[i] : 0;
	for (i = 0, sum = 0; i < n + 3; i++)
		sum += w[i];
	w[n + 3] = sum;
	return (n + 4) * 4;
}

static int query(int fd, uint32_t tag)
{
	uint32_t m[4];

	return write(fd, m, msg(m, 1, tag, NULL, 0)) == 16 ? 0 : -1;
}

/* Read a reply and check its opcode and tag; returns its length. */
static int reply(int fd, unsigned int op, uint32_t tag, uint32_t *r, size_t cap)
{
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, 60000) != 1)
		return fail("poll: no POLLIN (revents %#x)", p.revents);
	n = read(fd, r, cap);
	if (n < 0)
		return fail("read: %s", strerror(errno));
	if (n < 16 || (r[0] & 0xff) != op || r[2] != tag)
		return fail("reply of %zd bytes: op %#x tag %#x, want op %#x tag %#x",
			    n, r[0] & 0xff, n >= 12 ? r[2] : 0, op, tag);
	return n;
}

static int wait_wchan(pid_t pid)
{
	char path[64], buf[64];
	int i, fd, n;

	snprintf(path, sizeof(path), "/proc/%d/wchan", pid);
	for (i = 0; i < 20000; i++) {
		fd = open(path, O_RDONLY);
		n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
		if (fd >= 0)
			close(fd);
		if (n > 0 && !strncmp(buf, "waferq", 6))
			return 0;
		sleep_ms(1);
	}
	return -1;
}

static int signal_pending_in(pid_t pid)
{
	char path[64], buf[4096], *p;
	int fd, n, i;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	for (i = 0; i < 20000; i++) {
		fd = open(path, O_RDONLY);
		n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
		if (fd >= 0)
			close(fd);
		buf[n > 0 ? n : 0] = 0;
		p = strstr(buf, "ShdPnd:");
		if (p && strtoull(p + 7, NULL, 16))
			return 0;
		sleep_ms(1);
	}
	return -1;
}

static uint32_t r[4096];
static pid_t kids[8];
static unsigned int nkids;

/* fork(), remembering the child so that cleanup() can end it. */
static pid_t spawn(void)
{
	pid_t pid = fork();

	if (pid > 0 && nkids < 8)
		kids[nkids++] = pid;
	return pid;
}

static int t_roundtrip(void)
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
static int t_abort_then_next(void)
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

static int t_late_reply(void)
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

static int t_signal_during_read(void)
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
static int t_signal_during_send(void)
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

static int t_two_openers(void)
{
	int fd = open_dev(), fd2;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	fd2 = open(DEV, O_RDWR);
	CHECK(fd2 < 0 && errno == EBUSY, "second open: %d %s", fd2, strerror(errno));
	close(fd);
	return 0;
}

static int t_submit_and_error(void)
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
static int t_four_mib(void)
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
static int t_read_error_not_eof(void)
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
static int t_reset_while_reading(void)
{
	__u32 ms = 60000;
	pid_t child;
	int fd = open_dev(), st;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	CHECK(!ioctl(fd, WAFERQ_IOC_SET_TIMEOUT, &ms), "SET_TIMEOUT");
	knob("hold_reply", "1");
	CHECK(!query(fd, 40), "write: %s", strerror(errno));
	child = spawn();
	if (!child)
		_exit(read(fd, r, sizeof(r)) < 0 && errno == ECANCELED ? 0 : 1);
	CHECK(!wait_wchan(child), "reader never blocked");
	CHECK(!ioctl(fd, WAFERQ_IOC_RESET), "RESET: %s", strerror(errno));
	waitpid(child, &st, 0);
	knob("hold_reply", "0");
	CHECK(WIFEXITED(st) && !WEXITSTATUS(st), "the reader did not get ECANCELED");
	CHECK(!query(fd, 41) && reply(fd, 0x81, 41, r, sizeof(r)) > 0, "after RESET: %s", why);
	close(fd);
	return 0;
}

static int unbind(void)
{
	DIR *d = opendir("/sys/bus/platform/drivers/waferq");
	struct dirent *e;
	int ret = -1;

	while (d && (e = readdir(d)))
		if (strchr(e->d_name, '.') && strcmp(e->d_name, "..") && e->d_name[0] != '.')
			ret = write_file("/sys/bus/platform/drivers/waferq/unbind", e->d_name);
	if (d)
		closedir(d);
	return ret;
}

static int t_unbind_and_rmmod_with_file_open(void)
{
	struct pollfd p;
	pid_t child;
	int fd = open_dev(), st;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	knob("hold_reply", "1");
	CHECK(!query(fd, 50), "write: %s", strerror(errno));
	child = spawn();
	if (!child)
		_exit(read(fd, r, sizeof(r)) < 0 && errno == ENODEV ? 0 : 1);
	CHECK(!wait_wchan(child), "reader never blocked");
	CHECK(rmmod("waferq") && errno == EWOULDBLOCK, "rmmod with the file open: %s",
	      strerror(errno));
	CHECK(!unbind(), "unbind: %s", strerror(errno));
	waitpid(child, &st, 0);
	knob("hold_reply", "0");
	CHECK(WIFEXITED(st) && !WEXITSTATUS(st), "the blocked reader did not get ENODEV");
	p.fd = fd;
	p.events = POLLIN;
	CHECK(poll(&p, 1, 0) == 1 && (p.revents & (POLLERR | POLLHUP)), "poll after unbind %#x",
	      p.revents);
	CHECK(query(fd, 51) && errno == ENODEV, "write after unbind: %s", strerror(errno));
	close(fd);
	CHECK(!rmmod("waferq"), "rmmod after close: %s", strerror(errno));
	return 0;
}

static int t_insmod_rmmod_cycles(void)
{
	int i, fd;

	for (i = 0; i < 3; i++) {
		CHECK(!insmod("/waferq.ko", i ? "" : "max_reply_bytes=16"), "insmod %d: %s", i,
		      strerror(errno));
		fd = open_dev();
		CHECK(fd >= 0, "open %d: %s", i, strerror(errno));
		CHECK(!query(fd, 60 + i) && reply(fd, 0x81, 60 + i, r, sizeof(r)) == 56,
		      "cycle %d: %s", i, why);
		close(fd);
		CHECK(!rmmod("waferq"), "rmmod %d: %s", i, strerror(errno));
	}
	CHECK(strstr(kernel_log(), "raised from max_reply_bytes=16"), "max_reply_bytes not floored");
	CHECK(!insmod("/waferq.ko", ""), "insmod: %s", strerror(errno));
	return 0;
}

/* Load the model with @params and waferq after it; waferq must not bind. */
static int refused(const char *params, const char *line)
{
	CHECK(!rmmod("waferq") && !rmmod("waferq_testonly_dma"), "rmmod: %s", strerror(errno));
	CHECK(!insmod("/waferq_testonly_dma.ko", params), "insmod model: %s", strerror(errno));
	CHECK(!insmod("/waferq.ko", ""), "insmod: %s", strerror(errno));
	CHECK(access(DEV, F_OK) && errno == ENOENT, "bound to the wrong bitstream (%s)", params);
	CHECK(strstr(kernel_log(), line), "no log line \"%s\"", line);
	return 0;
}

/* Defect 2: the wrong bitstream is refused at probe, naming both values. */
static int t_probe_checks_the_bitstream(void)
{
	CHECK(!refused("topology=0x1", "topology hash is 0x00000001, the device tree's "
		       "waferq,topology-hash is 0x1234abcd"), "%s", why);
	CHECK(!refused("version=0x20000", "PL glue version 0x00020000"), "%s", why);
	CHECK(!rmmod("waferq") && !rmmod("waferq_testonly_dma"), "rmmod: %s", strerror(errno));
	CHECK(!insmod("/waferq_testonly_dma.ko", "") && !insmod("/waferq.ko", ""), "reload: %s",
	      strerror(errno));
	CHECK(open_dev() >= 0, "the right bitstream is not bound: %s", strerror(errno));
	return 0;
}

static int t_kernel_log_clean(void)
{
	/* "memory leaks", not "kmemleak": a kmemleak kernel names itself at boot */
	static const char *const bad[] = { "WARNING:", "Oops", "BUG:", "memory leaks",
		"Call trace", "Internal error", "refcount_t", "UBSAN", "KASAN" };
	const char *log = kernel_log();
	unsigned int i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!strstr(log, bad[i]), "kernel log has \"%s\"", bad[i]);
	return 0;
}

#define KMEMLEAK "/sys/kernel/debug/kmemleak"
static char leaks[1 << 18];

/*
 * Is this reported object ours? Its backtrace names waferq or
 * waferq_testonly_dma, or holds an address that no longer resolves to a
 * symbol in the module area (0xbf000000.., below PAGE_OFFSET; the code of a
 * module instance that the cases unloaded since).
 */
static int leak_is_ours(const char *obj, const char *end)
{
	const char *w = strstr(obj, "waferq"), *a = strstr(obj, "] 0xbf");

	return (w && w < end) || (a && a < end);
}

/*
 * Only with a kmemleak kernel (run.sh KMEMLEAK=1 puts WQ_KMEMLEAK=1 on the
 * command line, which the kernel hands to /init as an environment variable):
 * two scans, as Documentation/dev-tools/kmemleak.rst advises (an object is
 * reported only once its contents held still over a scan), with the modules
 * loaded as the cases left them. Fails on any report that is ours; prints
 * every report. Objects younger than 5 s are never reported, hence the wait.
 * WQ_LEAK=1 makes the TEST-ONLY model lose allocations first (the check's
 * own test: this case must then fail, naming the model).
 */
static int t_kmemleak_clean(void)
{
	int fd, ours = 0, all = 0;
	ssize_t n;
	size_t len = 0;
	const char *obj, *next, *log;

	mount("debugfs", "/sys/kernel/debug", "debugfs", 0, NULL);
	CHECK(!access(KMEMLEAK, R_OK), "no %s: not a kmemleak kernel (%s)", KMEMLEAK,
	      strerror(errno));
	if (getenv("WQ_LEAK"))
		knob("leak", "8");
	sleep_ms(6000);
	CHECK(!write_file(KMEMLEAK, "scan") && !write_file(KMEMLEAK, "scan"),
	      "scan: %s", strerror(errno));
	fd = open(KMEMLEAK, O_RDONLY);
	CHECK(fd >= 0, "open %s: %s", KMEMLEAK, strerror(errno));
	while (len < sizeof(leaks) - 1 && (n = read(fd, leaks + len, sizeof(leaks) - 1 - len)) > 0)
		len += n;
	close(fd);
	leaks[len] = 0;
	for (obj = strstr(leaks, "unreferenced object"); obj; obj = next) {
		next = strstr(obj + 1, "unreferenced object");
		all++;
		ours += leak_is_ours(obj, next ? next : leaks + len);
	}
	if (len)
		printf("---- kmemleak ----\n%s----\n", leaks);
	printf("kmemleak: %d suspected leaks, %d of them from waferq or the test-only DMA model\n",
	       all, ours);
	CHECK(!ours, "kmemleak reports %d leaks from waferq or the test-only DMA model", ours);
	/* the scans themselves must not have warned */
	log = kernel_log();
	CHECK(!strstr(log, "WARNING:") && !strstr(log, "BUG:") && !strstr(log, "Oops"),
	      "the kernel log has a WARNING, BUG or Oops after the scans");
	return 0;
}

/* After each test: no knob left set, no file left open. */
static void cleanup(void)
{
	static const char *const knobs[] = { "stall_tx", "hold_reply", "drop",
		"late_reply", "bogus_residue", "fail_tx" };
	unsigned int i;
	int fd;

	for (i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++)
		knob(knobs[i], "0");
	for (fd = 3; fd < 64; fd++)
		close(fd);
	while (nkids) {
		kill(kids[--nkids], SIGKILL);
		waitpid(kids[nkids], NULL, 0);
	}
}

static void run(const char *name, int (*fn)(void))
{
	int ret;

	why[0] = 0;
	ret = fn();
	cleanup();
	if (ret == 0) {
		passed++;
		printf("PASS %s\n", name);
	} else {
		failed++;
		printf("FAIL %s: %s\n", name, why);
	}
	fflush(stdout);
}

int main(void)
{
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("waferq-qemu: kernel log follows on failure; tests start\n");

	if (insmod("/waferq_testonly_dma.ko", "") || insmod("/waferq.ko", "")) {
		printf("FAIL insmod: %s\n", strerror(errno));
		failed++;
	} else {
		run("open_write_poll_read_ioctl_close", t_roundtrip);
		run("timeout_close_reopen_write", t_abort_then_next);
		run("late_reply_dropped_by_tag", t_late_reply);
		run("signal_during_read", t_signal_during_read);
		run("signal_during_send", t_signal_during_send);
		run("two_openers_ebusy", t_two_openers);
		run("submit_and_error_reply", t_submit_and_error);
		run("four_mib_requests", t_four_mib);
		run("read_error_not_eof", t_read_error_not_eof);
		run("reset_while_reading", t_reset_while_reading);
		run("unbind_and_rmmod_with_file_open", t_unbind_and_rmmod_with_file_open);
		run("insmod_rmmod_cycles", t_insmod_rmmod_cycles);
		run("probe_checks_the_bitstream", t_probe_checks_the_bitstream);
		run("kernel_log_clean", t_kernel_log_clean);
		if (getenv("WQ_KMEMLEAK"))
			run("kmemleak_clean", t_kmemleak_clean);
	}
	if (failed)
		printf("---- kernel log ----\n%s\n----\n", kernel_log());
	printf("%d passed, %d failed\n", passed, failed);
	fflush(stdout);
	sync();
	reboot(RB_POWER_OFF);
	return 0;
}
