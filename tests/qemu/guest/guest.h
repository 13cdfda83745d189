/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What the QEMU test guest's files share: the helpers (guest_util.c), the
 * cases on the stream (t_stream.c) and on the module's life (t_module.c), and
 * /init itself (wq_guest_init.c).
 */
#ifndef WQ_GUEST_H
#define WQ_GUEST_H

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

/* A case returns 0, or fail()'s -1 with the reason in why. */
#define CHECK(c, ...) do { if (!(c)) return fail(__VA_ARGS__); } while (0)

extern char why[256];
extern volatile int sigs;
extern uint32_t r[4096];	/* the cases' reply buffer */

/* guest_util.c */
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void on_sig(int s);
void sleep_ms(int ms);
int write_file(const char *path, const char *val);
long read_num(const char *path);
void knob(const char *name, const char *val);
const char *kernel_log(void);
int insmod(const char *path, const char *params);
int rmmod(const char *name);
int open_dev(void);
size_t msg(uint32_t *w, unsigned int op, uint32_t tag, const uint32_t *p, uint32_t n);
int query(int fd, uint32_t tag);
int reply(int fd, unsigned int op, uint32_t tag, uint32_t *r, size_t cap);
int wait_wchan(pid_t pid);
int signal_pending_in(pid_t pid);
pid_t spawn(void);
pid_t blocked_reader(int fd, int err);
void end_kids(void);

/* t_stream.c */
int t_roundtrip(void);
int t_abort_then_next(void);
int t_late_reply(void);
int t_signal_during_read(void);
int t_signal_during_send(void);
int t_two_openers(void);
int t_submit_and_error(void);
int t_four_mib(void);
int t_read_error_not_eof(void);
int t_reset_while_reading(void);

/* t_module.c */
int t_unbind_and_rmmod_with_file_open(void);
int t_insmod_rmmod_cycles(void);
int t_probe_checks_the_bitstream(void);
int t_kernel_log_clean(void);
int t_kmemleak_clean(void);

#endif
