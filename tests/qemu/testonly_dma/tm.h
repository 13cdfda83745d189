/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * TEST ONLY, never part of the product: what the three files of the QEMU
 * test's AXI DMA model share (tm_main.c probes and holds the knobs, tm_chan.c
 * is the dmaengine provider, tm_core.c the model of the waferq core).
 */
#ifndef TM_H
#define TM_H

#include <linux/dmaengine.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/of_dma.h>
#include <linux/spinlock.h>
#include <linux/version.h>
#include <linux/workqueue.h>

#include "wq_stream_format.h"
#undef WQ_GUARD_TAIL_WORDS	/* both generated headers define it */
#include "wq_csr_map.h"

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 6, 0)
#define TM_POOL		512
#else
#define TM_POOL		255
#endif
#define TM_SEG_MAX	(BIT(26) - 4)
#define TM_CORE_OFF	0x10000		/* "core" window inside our reg */
#define TM_AUTO_RESTART	BIT(7)
#define TM_MSG_MAX	(WQ_MAX_MESSAGE_WORDS * 4)
#define TM_BIG_ORDER	10		/* 4 MiB contiguous for the mmap tests */

struct tm_desc {
	struct dma_async_tx_descriptor tx;
	struct list_head node;
	unsigned int nsegs;	/* pool descriptors it holds */
	unsigned int n;
	size_t len;
	dma_addr_t *addr;
	u32 *seglen;
};

struct tm_chan {
	struct dma_chan chan;
	bool is_tx;
	bool irq_en;
	bool stuck;		/* completed without interrupt: never idle again */
	unsigned int pool;
	struct list_head submitted, issued;
};

struct tm_reply {
	struct list_head node;
	size_t len;
	u8 data[];
};

struct tmodel {
	struct device *dev;
	struct dma_device dd;
	struct tm_chan ch[2];
	spinlock_t lock;	/* everything below and the channel state */
	struct work_struct work;
	struct task_struct *pl;
	void __iomem *regs;
	u8 *msg;
	struct list_head replies;
	u8 *loaded;
	size_t loaded_len;
	u8 *last;
	size_t last_len;
	bool weights;
	u32 weights_sum;
	struct page *big;
	struct miscdevice misc;
};

extern struct tmodel *the_tm;

/* The knobs and counters (module parameters, tm_main.c); under tm->lock. */
extern bool tm_stall_tx, tm_hold_reply, tm_late_reply, tm_bogus_residue,
	    tm_fail_tx;
extern unsigned int tm_drop, tm_resets, tm_soft_resets, tm_topology;

/* tm_chan.c */
void tm_dma_init(struct tmodel *tm);
struct dma_chan *tm_xlate(struct of_phandle_args *args, struct of_dma *ofdma);

/* tm_core.c */
void tm_core(struct tmodel *tm, size_t len);
int tm_pl_thread(void *data);
extern const struct file_operations tm_fops;

#endif
