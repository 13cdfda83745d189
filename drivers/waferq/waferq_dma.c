// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq dmaengine part: the Xilinx AXI DMA in scatter-gather mode.
 *
 * Requests (MM2S, "tx") go straight from the caller's pages: waferq_pin.c
 * pins them, puts them in an sg_table (physically contiguous pages merged) and
 * maps it for the DMA engine; one message is one descriptor chain and the AXI DMA sets TLAST
 * on its last beat. Replies (S2MM, "rx") land in a coherent buffer allocated
 * at probe and armed before each request is sent; the transfer ends at TLAST
 * and the residue gives the reply length. drivers/README.md explains the
 * choice, and what xilinx_dma does on a terminate (see waferq_dma_abort()).
 * The channels and the buffer are taken in waferq_chan.c.
 */
#include <linux/device.h>
#include <linux/dma-mapping.h>
#include <linux/jiffies.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>

#include "waferq.h"
#include "waferq_msg.h"

/**
 * waferq_dma_result_name() - a failed xilinx_dma transfer as a sentence
 * @result: the result its callback reported
 *
 * xilinx_dma names the failures from the DMA's side: an S2MM (receive)
 * error is DMA_TRANS_READ_FAILED, an MM2S (send) error DMA_TRANS_WRITE_FAILED.
 *
 * Return: a static string.
 */
const char *waferq_dma_result_name(enum dmaengine_tx_result result)
{
	switch (result) {
	case DMA_TRANS_NOERROR:
		return "no error";
	case DMA_TRANS_READ_FAILED:
		return "S2MM error: the reply could not be written to memory";
	case DMA_TRANS_WRITE_FAILED:
		return "MM2S error: the request could not be read from memory";
	case DMA_TRANS_ABORTED:
		return "the transfer was aborted";
	}
	return "unknown DMA result";
}

static void waferq_tx_callback(void *param, const struct dmaengine_result *res)
{
	struct waferq_dev *wq = param;
	unsigned long flags;

	spin_lock_irqsave(&wq->slock, flags);
	wq->tx_result = res ? res->result : DMA_TRANS_NOERROR;
	wq->tx_done = true;
	wq->tx_busy = false;
	spin_unlock_irqrestore(&wq->slock, flags);
	wake_up(&wq->waitq);
}

static void waferq_rx_callback(void *param, const struct dmaengine_result *res);

/* Prepare, submit and start the receive; slock held. */
static int waferq_rx_submit(struct waferq_dev *wq)
{
	struct dma_async_tx_descriptor *desc;
	dma_cookie_t cookie;

	desc = dmaengine_prep_slave_single(wq->rx_chan, wq->rx_dma, wq->rx_size,
					   DMA_DEV_TO_MEM,
					   DMA_PREP_INTERRUPT | DMA_CTRL_ACK);
	if (!desc)
		return -ENOMEM;
	desc->callback_result = waferq_rx_callback;
	desc->callback_param = wq;
	cookie = dmaengine_submit(desc);
	if (dma_submit_error(cookie))
		return -EIO;
	dma_async_issue_pending(wq->rx_chan);
	return 0;
}

/* Bytes the receive filled, from the residue or the reply's length word. */
static size_t waferq_rx_len(struct waferq_dev *wq, u32 residue)
{
	size_t len = residue < wq->rx_size ? wq->rx_size - residue : 0;
	size_t announced;

	/*
	 * A dmaengine driver that reports no residue leaves len at the whole
	 * buffer; the reply's own length word is then the better answer.
	 */
	if (residue == 0 && len >= WAFERQ_MSG_HEAD_BYTES) {
		announced = waferq_msg_announced_bytes(wq->rx_buf);
		if (announced && announced < len)
			len = announced;
	}
	return len;
}

static void waferq_rx_callback(void *param, const struct dmaengine_result *res)
{
	struct waferq_dev *wq = param;
	unsigned long flags;
	size_t len;
	u32 tag;

	spin_lock_irqsave(&wq->slock, flags);
	/* Aborted meanwhile: the receive is no longer wanted. */
	if (wq->state != WAFERQ_WAITING)
		goto out;
	wq->rx_result = res ? res->result : DMA_TRANS_NOERROR;
	wq->rx_residue = res ? res->residue : 0;

	/*
	 * A reply whose tag is not the request's is a late answer to an
	 * earlier, aborted request: drop it and wait on for our own.
	 */
	len = waferq_rx_len(wq, wq->rx_residue);
	if (wq->rx_result == DMA_TRANS_NOERROR &&
	    len >= WAFERQ_MSG_HEAD_BYTES) {
		tag = waferq_msg_word(wq->rx_buf, 2);
		if (tag != wq->rx_tag) {
			dev_warn_ratelimited(wq->dev,
					     "dropped a late %zu-byte reply with tag %#x (waiting for tag %#x)\n",
					     len, tag, wq->rx_tag);
			if (!waferq_rx_submit(wq))
				goto out;
			wq->rx_result = DMA_TRANS_ABORTED;
		}
	}
	wq->state = WAFERQ_READY;
out:
	spin_unlock_irqrestore(&wq->slock, flags);
	wake_up(&wq->waitq);
}

/**
 * waferq_dma_arm_rx() - start the S2MM receive of the next reply
 * @wq: the device, lock held, state WAFERQ_IDLE
 * @tag: the tag of the request the reply answers
 *
 * Armed before the request goes out, so the core's reply never waits for a
 * buffer. On success the state is WAFERQ_WAITING.
 *
 * Return: 0 or a negative errno.
 */
static int waferq_dma_arm_rx(struct waferq_dev *wq, u32 tag)
{
	int ret;

	if (!wq->rx_chan)
		return -EIO;
	spin_lock_irq(&wq->slock);
	wq->rx_tag = tag;
	wq->state = WAFERQ_WAITING;
	ret = waferq_rx_submit(wq);
	if (ret)
		wq->state = WAFERQ_IDLE;
	spin_unlock_irq(&wq->slock);
	if (ret)
		dev_err(wq->dev, "%s: cannot start the S2MM receive of %zu bytes: %d\n",
			dma_chan_name(wq->rx_chan), wq->rx_size, ret);
	return ret;
}

static bool waferq_tx_settled(struct waferq_dev *wq, unsigned int epoch)
{
	bool settled;

	spin_lock_irq(&wq->slock);
	settled = wq->tx_done || wq->epoch != epoch || wq->gone;
	spin_unlock_irq(&wq->slock);
	return settled;
}

/**
 * waferq_dma_send() - send one whole message from user memory (MM2S)
 * @wq: the device, lock held, receive armed
 * @ubuf: the message, 32-bit aligned
 * @len: its length in bytes, already checked by waferq_msg_check()
 * @tag: its tag word, which the reply must echo
 *
 * Arms the receive of the reply first, so the core never waits for a
 * buffer. Then drops @wq->lock while it waits until the DMA engine has moved the last
 * word into the core's RX FIFO, and takes it again. The wait ignores every
 * signal but a fatal one: a message cut short has no TLAST. On a timeout or
 * fatal signal it aborts (waferq_dma_abort()).
 *
 * Return: 0, -ETIMEDOUT, -EINTR (fatal signal), -ECANCELED (a reset or
 * close aborted it meanwhile), -ENODEV, -EIO, -EFAULT, -EINVAL, -EMSGSIZE
 * or -ENOMEM.
 */
int waferq_dma_send(struct waferq_dev *wq, const void __user *ubuf,
		    size_t len, u32 tag)
{
	struct dma_async_tx_descriptor *desc;
	unsigned int timeout_ms = wq->timeout_ms;
	struct waferq_user_sg u;
	unsigned int epoch;
	dma_cookie_t cookie;
	long left;
	int ret;

	if (!wq->tx_chan)
		return -EIO;

	ret = waferq_map_user(wq, ubuf, len, &u);
	if (ret)
		return ret;
	ret = waferq_dma_arm_rx(wq, tag);
	if (ret)
		goto out_unmap;

	desc = dmaengine_prep_slave_sg(wq->tx_chan, u.sgt.sgl, u.sgt.nents,
				       DMA_MEM_TO_DEV,
				       DMA_PREP_INTERRUPT | DMA_CTRL_ACK);
	if (!desc) {
		dev_err(wq->dev, "%s: cannot prepare the MM2S transfer of %zu bytes in %u segments\n",
			dma_chan_name(wq->tx_chan), len, u.sgt.nents);
		ret = -ENOMEM;
		goto out_abort;
	}
	desc->callback_result = waferq_tx_callback;
	desc->callback_param = wq;

	spin_lock_irq(&wq->slock);
	wq->tx_done = false;
	wq->tx_busy = true;
	epoch = wq->epoch;
	spin_unlock_irq(&wq->slock);
	cookie = dmaengine_submit(desc);
	if (dma_submit_error(cookie)) {
		dev_err(wq->dev, "%s: MM2S submit failed: %d\n",
			dma_chan_name(wq->tx_chan), cookie);
		spin_lock_irq(&wq->slock);
		wq->tx_busy = false;
		spin_unlock_irq(&wq->slock);
		ret = -EIO;
		goto out_abort;
	}
	dma_async_issue_pending(wq->tx_chan);

	mutex_unlock(&wq->lock);
	left = wait_event_killable_timeout(wq->waitq,
					   waferq_tx_settled(wq, epoch),
					   msecs_to_jiffies(timeout_ms));
	mutex_lock(&wq->lock);

	spin_lock_irq(&wq->slock);
	if (wq->gone)
		ret = -ENODEV;
	else if (wq->epoch != epoch)
		ret = -ECANCELED;
	else if (!wq->tx_done)
		ret = left < 0 ? -EINTR : -ETIMEDOUT;
	else if (wq->tx_result != DMA_TRANS_NOERROR)
		ret = -EIO;
	spin_unlock_irq(&wq->slock);

	if (ret == -ETIMEDOUT)
		dev_warn(wq->dev, "%s: the core did not take a %zu-byte request within %u ms (RX FIFO full or core stalled)\n",
			 dma_chan_name(wq->tx_chan), len, timeout_ms);
	else if (ret == -EIO)
		dev_err(wq->dev, "%s: MM2S transfer of %zu bytes failed: %s\n",
			dma_chan_name(wq->tx_chan), len,
			waferq_dma_result_name(wq->tx_result));
	if (ret != -ETIMEDOUT && ret != -EINTR && ret != -EIO)
		goto out_unmap;
out_abort:
	/* Stop the engine before the pages go back to the caller. */
	waferq_dma_abort(wq, WAFERQ_ABORT_FORCE);
	waferq_core_reset(wq);
out_unmap:
	waferq_unmap_user(&u);
	return ret;
}

/**
 * waferq_dma_abort() - stop what is in flight and forget the reply
 * @wq: the device, lock held
 * @flags: WAFERQ_ABORT_FORCE: reset the DMA even with nothing in flight (a
 *	channel that reported an error stays halted until then);
 *	WAFERQ_ABORT_NO_RESTORE: do not take the channels again (remove)
 *
 * Only channels with a transfer in flight are terminated. On the AXI DMA a
 * terminate resets the whole core, both channels, and xilinx_dma enables
 * interrupts again only on the channel it terminated (v5.7 and later); the
 * other one would complete its next transfer without an interrupt. So after
 * a real abort both channels are released and requested again: allocating
 * a channel's resources enables its interrupts. Waits for running callbacks,
 * so nothing touches the buffers afterwards, and wakes every waiter.
 *
 * Return: true when a transfer was in flight (the caller resets the core).
 */
bool waferq_dma_abort(struct waferq_dev *wq, unsigned int flags)
{
	bool tx, rx;

	spin_lock_irq(&wq->slock);
	tx = wq->tx_busy || (flags & WAFERQ_ABORT_FORCE);
	rx = wq->state == WAFERQ_WAITING || (flags & WAFERQ_ABORT_FORCE);
	wq->state = WAFERQ_IDLE;
	wq->tx_busy = false;
	wq->epoch++;
	spin_unlock_irq(&wq->slock);

	if ((tx || rx) && wq->rx_chan) {
		if (tx)
			dmaengine_terminate_sync(wq->tx_chan);
		/* A reset from either channel also ends the receive. */
		dmaengine_terminate_sync(wq->rx_chan);
	}
	if ((tx || rx) && wq->rx_chan && !(flags & WAFERQ_ABORT_NO_RESTORE)) {
		waferq_dma_release(wq);
		if (waferq_request_chans(wq))
			dev_err(wq->dev, "cannot take the DMA channels again after an abort: unbind and bind the device\n");
	}
	wake_up(&wq->waitq);
	return tx || rx;
}
