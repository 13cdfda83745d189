// SPDX-License-Identifier: GPL-2.0-only
/*
 * Print every ioctl number and struct size of <linux/waferq.h>, one
 * "NAME VALUE" a line; tests/test_driver_build.py compares them with
 * protocol/ioctl.py.
 */
#include <stdio.h>
#include <linux/waferq.h>

#define SHOW(x) printf("%s %lu\n", #x, (unsigned long)(x))

int main(void)
{
	SHOW(WAFERQ_IOC_MAGIC);
	SHOW(WAFERQ_IOC_MAXNR);
	SHOW(WAFERQ_IOC_RESET);
	SHOW(WAFERQ_IOC_GET_STATS);
	SHOW(WAFERQ_IOC_SET_TIMEOUT);
	SHOW(WAFERQ_IOC_SUBMIT);
	SHOW(WAFERQ_IOC_GET_API_VERSION);
	SHOW(WAFERQ_API_VERSION);
	SHOW(sizeof(struct waferq_stats));
	SHOW(sizeof(struct waferq_submit));
	SHOW(WAFERQ_TIMEOUT_MIN_MS);
	SHOW(WAFERQ_TIMEOUT_MAX_MS);
	return 0;
}
