// SPDX-License-Identifier: GPL-2.0-only
/* Helpers of the QEMU test guest: files, modules, messages, children. */
#include "guest.h"

char why[256];
volatile int sigs;

int fail(const char *fmt, ...)
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

void on_sig(int s) { (void)s; sigs++; }

void sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY), n;

	if (fd < 0)
		return -1;
	n = write(fd, val, strlen(val));
	close(fd);
	return n < 0 ? -1 : 0;
}

long read_num(const char *path)
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

void knob(const char *name, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), PARAM "%s", name);
	if (write_file(path, val))
		printf("cannot set %s\n", path);
}

/* The kernel log since boot, into a static buffer. */
static char klog[1 << 20];

const char *kernel_log(void)
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

int insmod(const char *path, const char *params)
{
	int fd = open(path, O_RDONLY), ret;

	if (fd < 0)
		return -1;
	ret = syscall(SYS_finit_module, fd, params, 0);
	close(fd);
	return ret;
}

int rmmod(const char *name)
{
	return syscall(SYS_delete_module, name, O_NONBLOCK);
}

/* Hang guard only: the node appears within moments. */
int open_dev(void)
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
size_t msg(uint32_t *w, unsigned int op, uint32_t tag,
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

int query(int fd, uint32_t tag)
{
	uint32_t m[4];

	return write(fd, m, msg(m, 1, tag, NULL, 0)) == 16 ? 0 : -1;
}

/* Read a reply and check its opcode and tag; returns its length. */
int reply(int fd, unsigned int op, uint32_t tag, uint32_t *r, size_t cap)
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

static int in_wchan(const char *buf)
{
	return !strncmp(buf, "waferq", 6);
}

static int has_pending_signal(const char *buf)
{
	const char *p = strstr(buf, "ShdPnd:");

	return p && strtoull(p + 7, NULL, 16);
}

/*
 * Read /proc/<pid>/<file> until @match likes it. Hang guard only: the state
 * it waits for comes within moments.
 */
static int wait_proc(pid_t pid, const char *file, int (*match)(const char *))
{
	char path[64], buf[4096];
	int i, fd, n;

	snprintf(path, sizeof(path), "/proc/%d/%s", pid, file);
	for (i = 0; i < 20000; i++) {
		fd = open(path, O_RDONLY);
		n = fd < 0 ? 0 : read(fd, buf, sizeof(buf) - 1);
		if (fd >= 0)
			close(fd);
		buf[n > 0 ? n : 0] = 0;
		if (match(buf))
			return 0;
		sleep_ms(1);
	}
	return -1;
}

/* @pid sleeps in the waferq driver. */
int wait_wchan(pid_t pid)
{
	return wait_proc(pid, "wchan", in_wchan);
}

/* @pid has a signal pending (and so has not yet taken it). */
int signal_pending_in(pid_t pid)
{
	return wait_proc(pid, "status", has_pending_signal);
}

uint32_t r[4096];
static pid_t kids[8];
static unsigned int nkids;

/* fork(), remembering the child so that cleanup() can end it. */
pid_t spawn(void)
{
	pid_t pid = fork();

	if (pid > 0 && nkids < 8)
		kids[nkids++] = pid;
	return pid;
}

/* End every child that spawn() started and that is still around. */
void end_kids(void)
{
	while (nkids) {
		kill(kids[--nkids], SIGKILL);
		waitpid(kids[nkids], NULL, 0);
	}
}

/*
 * A child blocked in read(@fd), which exits 0 when that read fails with @err
 * and 1 otherwise; -1 when it never blocked in the driver.
 */
pid_t blocked_reader(int fd, int err)
{
	pid_t child = spawn();

	if (!child)
		_exit(read(fd, r, sizeof(r)) < 0 && errno == err ? 0 : 1);
	return child > 0 && !wait_wchan(child) ? child : -1;
}
