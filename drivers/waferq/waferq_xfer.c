// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq request/reply exchange: send one checked message, wait for its
 * reply and copy it out, and recover the device when a reply is late,
 * failed or left unread. The file operations (waferq_fops.c) take the
 * locks with waferq_lock_io() and call the rest with both held.
 *
 * wq->io_lock lets one thread at a time run a request or wait for a reply,
 * so there is at most one request in flight and its reply cannot go to the
 * wrong caller. wq->lock is only held for short steps and never across a
 * wait, so RESET, GET_STATS, close and remove() never wait for the device.
 */
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/uaccess.h>

#include "waferq.h"
#include "waferq_msg.h"

int waferq_lock(struct waferq_dev *wq)
{
	if (mutex_lock_interruptible(&wq->lock))
		return -ERESTARTSYS;
	if (wq->gone) {
		mutex_unlock(&wq->lock);
		return -ENODEV;
	}
	return 0;
}

/* io_lock, then lock; undone by waferq_unlock_io(). */
int waferq_lock_io(struct waferq_dev *wq)
{
	int ret;

	if (mutex_lock_interruptible(&wq->io_lock))
		return -ERESTARTSYS;
	ret = waferq_lock(wq);
	if (ret)
		mutex_unlock(&wq->io_lock);
	return ret;
}

void waferq_unlock_io(struct waferq_dev *wq)
{
	mutex_unlock(&wq->lock);
	mutex_unlock(&wq->io_lock);
}

static enum waferq_state waferq_get_state(struct waferq_dev *wq,
					  unsigned int *epoch)
{
	enum waferq_state state;

	spin_lock_irq(&wq->slock);
	state = wq->state;
	if (epoch)
		*epoch = wq->epoch;
	spin_unlock_irq(&wq->slock);
	return state;
}

static bool waferq_reply_settled(struct waferq_dev *wq, unsigned int epoch)
{
	bool settled;

	spin_lock_irq(&wq->slock);
	settled = wq->state != WAFERQ_WAITING || wq->epoch != epoch ||
		  wq->gone;
	spin_unlock_irq(&wq->slock);
	return settled;
}

/* Stop what is in flight and, if anything was, reset the core; lock held. */
void waferq_recover(struct waferq_dev *wq, unsigned int flags)
{
	if (waferq_dma_abort(wq, flags))
		waferq_core_reset(wq);
}

/*
 * Wait until the outstanding reply is in; the reply is due timeout_ms after
 * its request was sent. Both locks held; wq->lock is dropped while waiting.
 * A signal leaves the receive armed, so the call can be restarted. A timeout
 * recovers: the device is idle and usable again.
 */
static int waferq_wait_reply(struct waferq_dev *wq, bool nonblock)
{
	enum waferq_state state;
	unsigned int epoch;
	long left;

	state = waferq_get_state(wq, &epoch);
	if (state == WAFERQ_READY)
		return 0;
	if (state == WAFERQ_IDLE)
		return -ENOMSG;
	if (nonblock)
		return -EAGAIN;

	left = max_t(long, (long)(wq->deadline - jiffies), 0);
	mutex_unlock(&wq->lock);
	left = wait_event_interruptible_timeout(wq->waitq,
						waferq_reply_settled(wq, epoch),
						left);
	mutex_lock(&wq->lock);
	if (wq->gone)
		return -ENODEV;
	if (left < 0)
		return -ERESTARTSYS;

	state = waferq_get_state(wq, NULL);
	if (!waferq_reply_settled(wq, epoch) || state == WAFERQ_WAITING) {
		dev_warn(wq->dev, "no reply within %u ms of the request: receive aborted, core reset\n",
			 wq->timeout_ms);
		wq->stats.timeouts++;
		waferq_recover(wq, 0);
		return -ETIMEDOUT;
	}
	spin_lock_irq(&wq->slock);
	left = wq->epoch != epoch;
	spin_unlock_irq(&wq->slock);
	/* A RESET or close on another thread took the request away. */
	return left ? -ECANCELED : 0;
}

/*
 * Before a new request: a reply that nobody read (the caller gave up
 * waiting) is awaited and dropped, so that it cannot be taken for the reply
 * to the new request.
 */
static int waferq_settle(struct waferq_dev *wq, bool nonblock)
{
	int ret;

	if (waferq_get_state(wq, NULL) == WAFERQ_IDLE)
		return 0;
	ret = waferq_wait_reply(wq, nonblock);
	if (ret == -ETIMEDOUT || ret == -ECANCELED || ret == -ENOMSG)
		return 0;
	if (ret)
		return ret;
	dev_warn(wq->dev, "dropping an unread reply to make way for a new request\n");
	waferq_recover(wq, 0);
	return 0;
}

/* Check and send one message, both locks held; arms the receive of its reply. */
int waferq_send(struct waferq_dev *wq, const void __user *ubuf, size_t len,
		bool nonblock)
{
	unsigned char head[WAFERQ_MSG_HEAD_BYTES];
	const char *why;
	int ret;

	ret = waferq_msg_check_size(len, &why);
	if (!ret) {
		if (copy_from_user(head, ubuf, sizeof(head)))
			return -EFAULT;
		ret = waferq_msg_check(head, len, &why);
	}
	if (ret) {
		dev_warn_ratelimited(wq->dev, "rejected a %zu-byte request: %s\n",
				     len, why);
		wq->stats.errors++;
		return ret;
	}

	ret = waferq_settle(wq, nonblock);
	if (ret)
		return ret;
	ret = waferq_dma_send(wq, ubuf, len, waferq_msg_word(head, 2));
	if (ret) {
		if (ret == -ETIMEDOUT)
			wq->stats.timeouts++;
		else if (ret != -EINTR && ret != -ECANCELED && ret != -ENODEV)
			wq->stats.errors++;
		return ret;
	}
	wq->deadline = jiffies + msecs_to_jiffies(wq->timeout_ms);
	wq->stats.tx_messages++;
	wq->stats.tx_bytes += len;
	return 0;
}

/* Wait for the reply and copy it out, both locks held. */
ssize_t waferq_recv(struct waferq_dev *wq, void __user *ubuf, size_t count,
		    bool nonblock)
{
	enum dmaengine_tx_result result;
	const char *why;
	size_t len;
	u32 residue;
	int ret;

	ret = waferq_wait_reply(wq, nonblock);
	if (ret)
		return ret;

	spin_lock_irq(&wq->slock);
	result = wq->rx_result;
	residue = wq->rx_residue;
	spin_unlock_irq(&wq->slock);

	if (result != DMA_TRANS_NOERROR) {
		dev_err(wq->dev, "%s: receiving the reply failed: %s\n",
			dma_chan_name(wq->rx_chan),
			waferq_dma_result_name(result));
		wq->stats.errors++;
		/* The channel halts on an error until it is reset. */
		waferq_recover(wq, WAFERQ_ABORT_FORCE);
		return -EIO;
	}

	len = residue < wq->rx_size ? wq->rx_size - residue : 0;
	if (!len) {
		dev_err(wq->dev, "%s: the DMA engine reported a residue of %u bytes for a %zu-byte receive: no reply\n",
			dma_chan_name(wq->rx_chan), residue, wq->rx_size);
		wq->stats.errors++;
		waferq_recover(wq, WAFERQ_ABORT_FORCE);
		return -EIO;
	}
	if (residue == 0 && len >= WAFERQ_MSG_HEAD_BYTES) {
		size_t announced = waferq_msg_announced_bytes(wq->rx_buf);

		if (announced && announced < len)
			len = announced;
	}
	if (waferq_msg_check(wq->rx_buf, len, &why)) {
		dev_warn_ratelimited(wq->dev, "the core sent a malformed %zu-byte reply (%s); passing it on\n",
				     len, why);
		wq->stats.errors++;
	}
	/* Too small a buffer or a fault keeps the reply for another read(). */
	if (len > count)
		return -EMSGSIZE;
	if (copy_to_user(ubuf, wq->rx_buf, len))
		return -EFAULT;

	spin_lock_irq(&wq->slock);
	wq->state = WAFERQ_IDLE;
	spin_unlock_irq(&wq->slock);
	wq->stats.rx_messages++;
	wq->stats.rx_bytes += len;
	return len;
}
