// SPDX-License-Identifier: GPL-2.0-only
/*
 * /init of the QEMU test guest (tests/qemu/run.sh): loads the TEST-ONLY DMA
 * model and the real waferq module, drives /dev/waferq0 through every case
 * of drivers/README.md "What ran in QEMU", checks the kernel log, prints
 * "PASS name" / "FAIL name: why" and "N passed, M failed", and powers off.
 * Static, no libc beyond the C library: the initramfs holds only this.
 */
#include "guest.h"

static int passed, failed;

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
	end_kids();
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
