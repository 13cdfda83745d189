// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq dmaengine part: the Xilinx AXI DMA in scatter-gather mode.
 *
 * Requests (MM2S, "tx") go straight from the caller's pages: they are pinned,
 * put in an sg_table (one entry per page, planned by waferq_sg.c) and mapped
 * for the DMA engine; one message is one descriptor chain and the AXI DMA
 * sets TLAST on its last beat. Replies (S2MM,
 * "rx") land in a coherent buffer allocated at probe and armed before each
 * request is sent; the transfer ends at TLAST and the residue gives the reply
 * length. drivers/README.md explains the choice.
 */
#include <linux/device.h>
#include <linux/dma-mapping.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <dt-bindings/waferq.h>

#include "waferq.h"
#include "waferq_sg.h"

/**
 * waferq_dma_result_name() - a dmaengine result as a sentence
 * @result: the result
 *
 * Return: a static string.
 */
const char *waferq_dma_result_name(enum dmaengine_tx_result result)
{
	switch (result) {
	case DMA_TRANS_NOERROR:
		return "no error";
	case DMA_TRANS_READ_FAILED:
		return "the DMA could not read memory (decode or slave error)";
	case DMA_TRANS_WRITE_FAILED:
		return "the DMA could not write memory (decode or slave error)";
	case DMA_TRANS_ABORTED:
		return "the transfer was aborted";
	}
	return "unknown DMA result";
}

static void waferq_release_chan(void *chan)
{
	dma_release_channel(chan);
}

static void waferq_free_rx_buf(void *data)
{
	struct waferq_dev *wq = data;

	dma_free_coherent(wq->rx_chan->device->dev, wq->rx_size, wq->rx_buf,
			  wq->rx_dma);
}

static int waferq_get_chan(struct waferq_dev *wq, const char *name,
			   struct dma_chan **chan)
{
	int ret;

	*chan = dma_request_chan(wq->dev, name);
	if (IS_ERR(*chan))
		return dev_err_probe(wq->dev, PTR_ERR(*chan),
				     "no \"%s\" DMA channel: check dmas and dma-names in the device tree\n",
				     name);
	ret = devm_add_action_or_reset(wq->dev, waferq_release_chan, *chan);
	if (ret)
		*chan = NULL;
	return ret;
}

/**
 * waferq_dma_init() - take both channels and allocate the receive buffer
 * @wq: the device
 * @rx_size: receive buffer size in bytes, the longest reply
 *
 * Everything is device-managed and released after remove().
 *
 * Return: 0 or a negative errno.
 */
int waferq_dma_init(struct waferq_dev *wq, size_t rx_size)
{
	int ret;

	ret = waferq_get_chan(wq, WAFERQ_DMA_TX_NAME, &wq->tx_chan);
	if (ret)
		return ret;
	ret = waferq_get_chan(wq, WAFERQ_DMA_RX_NAME, &wq->rx_chan);
	if (ret)
		return ret;

	/* The DMA engine does the memory accesses: map for its device. */
	wq->rx_size = rx_size;
	wq->rx_buf = dma_alloc_coherent(wq->rx_chan->device->dev, rx_size,
					&wq->rx_dma, GFP_KERNEL);
	if (!wq->rx_buf)
		return -ENOMEM;
	return devm_add_action_or_reset(wq->dev, waferq_free_rx_buf, wq);
}

static void waferq_tx_callback(void *param, const struct dmaengine_result *res)
{
	struct waferq_dev *wq = param;

	wq->tx_result = res ? res->result : DMA_TRANS_NOERROR;
	complete(&wq->tx_done);
}

static void waferq_rx_callback(void *param, const struct dmaengine_result *res)
{
	struct waferq_dev *wq = param;
	unsigned long flags;

	spin_lock_irqsave(&wq->slock, flags);
	wq->rx_result = res ? res->result : DMA_TRANS_NOERROR;
	wq->rx_residue = res ? res->residue : 0;
	wq->state = WAFERQ_READY;
	spin_unlock_irqrestore(&wq->slock, flags);

	complete(&wq->rx_done);
	wake_up_interruptible(&wq->waitq);
}

/**
 * waferq_dma_arm_rx() - start the S2MM receive of the next reply
 * @wq: the device, lock held, state WAFERQ_IDLE
 *
 * Armed before the request goes out, so the core's reply never waits for a
 * buffer. On success the state is WAFERQ_WAITING.
 *
 * Return: 0 or a negative errno.
 */
int waferq_dma_arm_rx(struct waferq_dev *wq)
{
	struct dma_async_tx_descriptor *desc;
	dma_cookie_t cookie;

	desc = dmaengine_prep_slave_single(wq->rx_chan, wq->rx_dma, wq->rx_size,
					   DMA_DEV_TO_MEM,
					   DMA_PREP_INTERRUPT | DMA_CTRL_ACK);
	if (!desc) {
		dev_err(wq->dev, "%s: cannot prepare the S2MM receive of %zu bytes\n",
			dma_chan_name(wq->rx_chan), wq->rx_size);
		return -ENOMEM;
	}
	desc->callback_result = waferq_rx_callback;
	desc->callback_param = wq;

	reinit_completion(&wq->rx_done);
	spin_lock_irq(&wq->slock);
	wq->state = WAFERQ_WAITING;
	spin_unlock_irq(&wq->slock);

	cookie = dmaengine_submit(desc);
	if (dma_submit_error(cookie)) {
		dev_err(wq->dev, "%s: S2MM submit failed: %d\n",
			dma_chan_name(wq->rx_chan), cookie);
		spin_lock_irq(&wq->slock);
		wq->state = WAFERQ_IDLE;
		spin_unlock_irq(&wq->slock);
		return -EIO;
	}
	dma_async_issue_pending(wq->rx_chan);
	return 0;
}

/* The caller's message, pinned and mapped for the MM2S channel. */
struct waferq_user_sg {
	struct page **pages;
	unsigned int nr_pages;
	struct sg_table sgt;
	struct device *dma_dev;
};

static void waferq_unmap_user(struct waferq_user_sg *u)
{
	dma_unmap_sgtable(u->dma_dev, &u->sgt, DMA_TO_DEVICE, 0);
	sg_free_table(&u->sgt);
	unpin_user_pages(u->pages, u->nr_pages);
	kvfree(u->pages);
}

/* One sg entry per pinned page, as waferq_sg_segment() planned it. */
static int waferq_fill_sgt(struct waferq_user_sg *u,
			   const struct waferq_sg_plan *plan)
{
	unsigned long offset, len;
	struct scatterlist *sg;
	unsigned int i;
	int ret;

	ret = sg_alloc_table(&u->sgt, plan->nr_pages, GFP_KERNEL);
	if (ret)
		return ret;
	for_each_sgtable_sg(&u->sgt, sg, i) {
		/* Cannot fail: i < nr_pages by the loop. */
		waferq_sg_segment(plan, i, &offset, &len);
		sg_set_page(sg, u->pages[i], len, offset);
	}
	return 0;
}

static int waferq_map_user(struct waferq_dev *wq, const void __user *ubuf,
			   size_t len, struct waferq_user_sg *u)
{
	struct waferq_sg_plan plan;
	const char *why;
	int pinned, ret;

	ret = waferq_sg_plan((unsigned long)ubuf, len, PAGE_SIZE, &plan, &why);
	if (ret) {
		dev_dbg(wq->dev, "cannot send a %zu-byte message from %p: %s\n",
			len, ubuf, why);
		return ret;
	}

	u->dma_dev = wq->tx_chan->device->dev;
	u->nr_pages = plan.nr_pages;
	u->pages = kvmalloc_array(u->nr_pages, sizeof(*u->pages), GFP_KERNEL);
	if (!u->pages)
		return -ENOMEM;

	/* The device only reads the message: no FOLL_WRITE. */
	pinned = pin_user_pages_fast(plan.page_addr, u->nr_pages, 0, u->pages);
	if (pinned != u->nr_pages) {
		ret = pinned < 0 ? pinned : -EFAULT;
		if (pinned > 0)
			unpin_user_pages(u->pages, pinned);
		goto err_free_pages;
	}

	ret = waferq_fill_sgt(u, &plan);
	if (ret)
		goto err_unpin;

	ret = dma_map_sgtable(u->dma_dev, &u->sgt, DMA_TO_DEVICE, 0);
	if (ret) {
		dev_err(wq->dev, "cannot map a %zu-byte message for DMA: %d\n",
			len, ret);
		goto err_free_table;
	}
	return 0;

err_free_table:
	sg_free_table(&u->sgt);
err_unpin:
	unpin_user_pages(u->pages, u->nr_pages);
err_free_pages:
	kvfree(u->pages);
	return ret;
}

/**
 * waferq_dma_send() - send one whole message from user memory (MM2S)
 * @wq: the device, lock held, receive armed
 * @ubuf: the message, 32-bit aligned
 * @len: its length in bytes, already checked by waferq_msg_check()
 *
 * Waits until the DMA engine has moved the last word into the core's RX
 * FIFO. On timeout or signal the channel is stopped; the caller aborts.
 *
 * Return: 0, -ETIMEDOUT, -EINTR, -EIO, -EFAULT, -EINVAL or -ENOMEM.
 */
int waferq_dma_send(struct waferq_dev *wq, const void __user *ubuf,
		    size_t len)
{
	struct dma_async_tx_descriptor *desc;
	struct waferq_user_sg u;
	dma_cookie_t cookie;
	long left;
	int ret;

	ret = waferq_map_user(wq, ubuf, len, &u);
	if (ret)
		return ret;

	desc = dmaengine_prep_slave_sg(wq->tx_chan, u.sgt.sgl, u.sgt.nents,
				       DMA_MEM_TO_DEV,
				       DMA_PREP_INTERRUPT | DMA_CTRL_ACK);
	if (!desc) {
		dev_err(wq->dev, "%s: cannot prepare the MM2S transfer of %zu bytes in %u segments\n",
			dma_chan_name(wq->tx_chan), len, u.sgt.nents);
		ret = -ENOMEM;
		goto out_unmap;
	}
	desc->callback_result = waferq_tx_callback;
	desc->callback_param = wq;

	reinit_completion(&wq->tx_done);
	cookie = dmaengine_submit(desc);
	if (dma_submit_error(cookie)) {
		dev_err(wq->dev, "%s: MM2S submit failed: %d\n",
			dma_chan_name(wq->tx_chan), cookie);
		ret = -EIO;
		goto out_unmap;
	}
	dma_async_issue_pending(wq->tx_chan);

	left = wait_for_completion_interruptible_timeout(&wq->tx_done,
							 msecs_to_jiffies(wq->timeout_ms));
	if (left <= 0) {
		/* Stop the engine before the pages go back to the caller. */
		dmaengine_terminate_sync(wq->tx_chan);
		if (left == 0) {
			dev_warn(wq->dev, "%s: the core did not take a %zu-byte request within %u ms (RX FIFO full or core stalled)\n",
				 dma_chan_name(wq->tx_chan), len,
				 wq->timeout_ms);
			ret = -ETIMEDOUT;
		} else {
			ret = -EINTR;
		}
		goto out_unmap;
	}
	if (wq->tx_result != DMA_TRANS_NOERROR) {
		dev_err(wq->dev, "%s: MM2S transfer of %zu bytes failed: %s\n",
			dma_chan_name(wq->tx_chan), len,
			waferq_dma_result_name(wq->tx_result));
		ret = -EIO;
	}

out_unmap:
	waferq_unmap_user(&u);
	return ret;
}

/**
 * waferq_dma_abort() - stop both channels and forget the outstanding reply
 * @wq: the device, lock held
 *
 * Waits for running callbacks, so nothing touches the buffers afterwards.
 */
void waferq_dma_abort(struct waferq_dev *wq)
{
	dmaengine_terminate_sync(wq->tx_chan);
	dmaengine_terminate_sync(wq->rx_chan);

	spin_lock_irq(&wq->slock);
	wq->state = WAFERQ_IDLE;
	spin_unlock_irq(&wq->slock);
}

