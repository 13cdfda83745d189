/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * waferq accelerator driver: state shared by waferq_main.c (probe/remove),
 * waferq_fops.c (file operations), waferq_dma.c (dmaengine transfers) and
 * waferq_pin.c (the request's pages pinned and mapped).
 */
#ifndef _WAFERQ_H
#define _WAFERQ_H

#include <linux/bits.h>
#include <linux/dmaengine.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/scatterlist.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/version.h>
#include <linux/wait.h>
#include <linux/waferq.h>

/* The device tree contract (Documentation: drivers/dt-bindings/). */
#define WAFERQ_COMPATIBLE	"waferq,accel-1.0"
#define WAFERQ_DMA_TX_NAME	"tx"	/* MM2S: memory -> accelerator RX FIFO */
#define WAFERQ_DMA_RX_NAME	"rx"	/* S2MM: accelerator TX FIFO -> memory */
#define WAFERQ_TOPOLOGY_PROP	"waferq,topology-hash"

/*
 * Descriptors xilinx_dma keeps per AXI DMA channel (XILINX_DMA_NUM_DESCS):
 * 255 up to v6.5, 512 from v6.6. A transfer that needs more cannot be
 * prepared at all.
 */
#if KERNEL_VERSION(6, 6, 0) <= LINUX_VERSION_CODE
#define WAFERQ_DMA_DESCS	512
#else
#define WAFERQ_DMA_DESCS	255
#endif
/*
 * Bytes one descriptor moves: the AXI DMA's 26-bit buffer-length field
 * (xlnx,sg-length-width = 26), rounded down to whole words.
 */
#define WAFERQ_DMA_SEG_MAX	(BIT(26) - 4)

/*
 * v6.11 made platform_driver.remove return void and removed no_llseek. The
 * version checks of the module live here, and only here.
 */
#if KERNEL_VERSION(6, 11, 0) <= LINUX_VERSION_CODE
#define WAFERQ_VOID_REMOVE
#endif

/* Where the one request/reply pair of a device stands. */
enum waferq_state {
	WAFERQ_IDLE,		/* no request outstanding */
	WAFERQ_WAITING,		/* request sent or being sent, receive armed */
	WAFERQ_READY,		/* receive finished; reply (or error) to read */
};

/**
 * struct waferq_dev - one accelerator instance
 * @dev: the platform device
 * @misc: /dev/waferq<N>
 * @name: "waferq<N>"
 * @id: N
 * @ref: held by the platform device and by each open file
 * @lock: serializes state changes, DMA setup, ioctls and remove; never
 *	held across a wait for the device
 * @io_lock: one request/reply transaction at a time among the opener's
 *	threads; held across waits, but RESET and remove() do not take it
 * @slock: protects @state, @epoch, @rx_result, @rx_residue, @tx_done and
 *	the receive re-arm in the DMA callbacks
 * @waitq: every waiter (send, reply, poll), woken by callbacks and aborts
 * @in_use: set while the device is open (one opener at a time)
 * @gone: set by remove(); every operation then fails with -ENODEV
 * @state: see enum waferq_state
 * @epoch: bumped by every abort; a waiter that sees it change lost its
 *	transfer to a reset
 * @tx_busy: an MM2S transfer is submitted and has not called back
 * @tx_done: the MM2S callback ran for the current send
 * @tx_chan: MM2S channel, "tx" in dma-names
 * @rx_chan: S2MM channel, "rx" in dma-names
 * @dma_dev: the DMA engine's device (buffers are mapped for it)
 * @tx_result: result of the last MM2S transfer
 * @rx_result: result of the last S2MM transfer
 * @rx_residue: bytes of the receive buffer the last S2MM did not fill
 * @rx_tag: tag of the outstanding request; a reply must echo it
 * @rx_buf: coherent receive buffer, @rx_size bytes
 * @rx_dma: its bus address for the DMA engine
 * @rx_size: its size in bytes
 * @csr: the PL glue's control/status registers ("csr")
 * @core: the HLS core's block-level control ("core")
 * @deadline: jiffies by which the outstanding reply must arrive
 * @timeout_ms: timeout of every wait
 * @stats: counters for WAFERQ_IOC_GET_STATS
 */
struct waferq_dev {
	struct device *dev;
	struct miscdevice misc;
	char name[24];			/* "waferq" and any int */
	int id;
	struct kref ref;
	struct mutex lock;		/* see @lock above */
	struct mutex io_lock;		/* see @io_lock above */
	spinlock_t slock;		/* see @slock above */
	wait_queue_head_t waitq;
	unsigned long in_use;
	bool gone;
	enum waferq_state state;
	unsigned int epoch;

	bool tx_busy;
	bool tx_done;
	struct dma_chan *tx_chan;
	struct dma_chan *rx_chan;
	struct device *dma_dev;
	enum dmaengine_tx_result tx_result;
	enum dmaengine_tx_result rx_result;
	u32 rx_residue;
	u32 rx_tag;
	void *rx_buf;
	dma_addr_t rx_dma;
	size_t rx_size;

	void __iomem *csr;
	void __iomem *core;
	unsigned long deadline;
	u32 timeout_ms;
	struct waferq_stats stats;
};

extern const struct file_operations waferq_fops;

/* The request/reply exchange (waferq_xfer.c). */
int waferq_lock(struct waferq_dev *wq);
int waferq_lock_io(struct waferq_dev *wq);
void waferq_unlock_io(struct waferq_dev *wq);
void waferq_recover(struct waferq_dev *wq, unsigned int flags);
int waferq_send(struct waferq_dev *wq, const void __user *ubuf, size_t len,
		bool nonblock);
ssize_t waferq_recv(struct waferq_dev *wq, void __user *ubuf, size_t count,
		    bool nonblock);

/*
 * The HLS core has ap_ctrl_hs control at offset 0 of its "core" register
 * window: it serves one message per start, so auto-restart keeps it serving.
 * A soft reset of the PL clears both bits, so they are set again after one.
 */
#define WAFERQ_AP_CTRL		0x00
#define WAFERQ_AP_START		BIT(0)
#define WAFERQ_AP_AUTO_RESTART	BIT(7)

void waferq_put(struct waferq_dev *wq);

int waferq_core_reset(struct waferq_dev *wq);

/* The caller's message, pinned and mapped for the MM2S channel (waferq_pin.c). */
struct waferq_user_sg {
	struct page **pages;
	unsigned int nr_pages;
	struct sg_table sgt;
	struct device *dma_dev;
};

int waferq_map_user(struct waferq_dev *wq, const void __user *ubuf, size_t len,
		    struct waferq_user_sg *u);
void waferq_unmap_user(struct waferq_user_sg *u);

/* Channels and receive buffer (waferq_chan.c); transfers (waferq_dma.c). */
int waferq_dma_init(struct waferq_dev *wq, size_t rx_size);
int waferq_request_chans(struct waferq_dev *wq);
void waferq_dma_release(struct waferq_dev *wq);
int waferq_dma_send(struct waferq_dev *wq, const void __user *ubuf,
		    size_t len, u32 tag);
#define WAFERQ_ABORT_FORCE	BIT(0)
#define WAFERQ_ABORT_NO_RESTORE	BIT(1)
bool waferq_dma_abort(struct waferq_dev *wq, unsigned int flags);
const char *waferq_dma_result_name(enum dmaengine_tx_result result);

#endif /* _WAFERQ_H */
