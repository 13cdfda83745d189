// SPDX-License-Identifier: GPL-2.0-only
/* The QEMU guest's cases on the module's life: unbind, reload, probe, leaks. */
#include "guest.h"

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

int t_unbind_and_rmmod_with_file_open(void)
{
	struct pollfd p;
	pid_t child;
	int fd = open_dev(), st;

	CHECK(fd >= 0, "open: %s", strerror(errno));
	knob("hold_reply", "1");
	CHECK(!query(fd, 50), "write: %s", strerror(errno));
	child = blocked_reader(fd, ENODEV);
	CHECK(child > 0, "reader never blocked");
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

int t_insmod_rmmod_cycles(void)
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
int t_probe_checks_the_bitstream(void)
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

int t_kernel_log_clean(void)
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
int t_kmemleak_clean(void)
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
