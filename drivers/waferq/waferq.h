/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * waferq accelerator driver: state shared by waferq_main.c (probe/remove),
 * waferq_fops.c (file operations) and waferq_dma.c (dmaengine transfers).
 */
#ifndef _WAFERQ_H
#define _WAFERQ_H

#include <linux/bits.h>
#include <linux/completion.h>
#include <linux/dmaengine.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/waferq.h>

struct gpio_desc;

/* Where the one request/reply pair of a device stands. */
enum waferq_state {
	WAFERQ_IDLE,		/* no request outstanding */
	WAFERQ_WAITING,		/* request sent, receive armed, no reply yet */
	WAFERQ_READY,		/* receive finished; reply (or error) to read */
};

/**
 * struct waferq_dev - one accelerator instance
 * @dev: the platform device
 * @misc: /dev/waferq<N>
 * @name: "waferq<N>"
 * @id: N
 * @ref: held by the platform device and by each open file
 * @lock: serializes every file operation and ioctl, and remove
 * @slock: protects @state, @rx_result and @rx_residue (DMA callback)
 * @waitq: poll() sleepers, woken when a reply is ready
 * @in_use: set while the device is open (one opener at a time)
 * @gone: set by remove(); every operation then fails with -ENODEV
 * @state: see enum waferq_state
 * @tx_chan: MM2S channel, "tx" in dma-names
 * @rx_chan: S2MM channel, "rx" in dma-names
 * @tx_done: completed by the MM2S callback
 * @rx_done: completed by the S2MM callback
 * @tx_result: result of the last MM2S transfer
 * @rx_result: result of the last S2MM transfer
 * @rx_residue: bytes of the receive buffer the last S2MM did not fill
 * @rx_buf: coherent receive buffer, @rx_size bytes
 * @rx_dma: its bus address for the DMA engine
 * @rx_size: its size in bytes
 * @reset_gpio: optional active-high reset of the core ("reset-gpios")
 * @deadline: jiffies by which the outstanding reply must arrive
 * @timeout_ms: timeout of every wait
 * @stats: counters for WAFERQ_IOC_GET_STATS
 */
struct waferq_dev {
	struct device *dev;
	struct miscdevice misc;
	char name[16];
	int id;
	struct kref ref;
	struct mutex lock;		/* see @lock above */
	spinlock_t slock;		/* see @slock above */
	wait_queue_head_t waitq;
	unsigned long in_use;
	bool gone;
	enum waferq_state state;

	struct dma_chan *tx_chan;
	struct dma_chan *rx_chan;
	struct completion tx_done;
	struct completion rx_done;
	enum dmaengine_tx_result tx_result;
	enum dmaengine_tx_result rx_result;
	u32 rx_residue;
	void *rx_buf;
	dma_addr_t rx_dma;
	size_t rx_size;

	struct gpio_desc *reset_gpio;
	void __iomem *core;		/* the HLS core's block-level control */
	unsigned long deadline;
	u32 timeout_ms;
	struct waferq_stats stats;
};

extern const struct file_operations waferq_fops;

/*
 * The HLS core has ap_ctrl_hs control at offset 0 of its "core" register
 * window: it serves one message per start, so auto-restart keeps it serving.
 * A reset of the core clears both bits, so they are set again after one.
 */
#define WAFERQ_AP_CTRL		0x00
#define WAFERQ_AP_START		BIT(0)
#define WAFERQ_AP_AUTO_RESTART	BIT(7)

static inline void waferq_start_core(struct waferq_dev *wq)
{
	writel(WAFERQ_AP_START | WAFERQ_AP_AUTO_RESTART, wq->core + WAFERQ_AP_CTRL);
}

void waferq_put(struct waferq_dev *wq);

int waferq_dma_init(struct waferq_dev *wq, size_t rx_size);
int waferq_dma_arm_rx(struct waferq_dev *wq);
int waferq_dma_send(struct waferq_dev *wq, const void __user *ubuf,
		    size_t len);
void waferq_dma_abort(struct waferq_dev *wq);
const char *waferq_dma_result_name(enum dmaengine_tx_result result);

#endif /* _WAFERQ_H */
