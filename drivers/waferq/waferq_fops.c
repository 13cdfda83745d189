// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq file operations: one write() sends one whole message, one read()
 * returns one whole reply, poll() reports a ready reply, and the ioctls of
 * <linux/waferq.h>.
 *
 * One opener at a time (a second open() fails with -EBUSY); within that
 * opener, wq->lock serializes threads, so there is at most one request in
 * flight and its reply cannot go to the wrong caller.
 */
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/gpio/consumer.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/poll.h>
#include <linux/uaccess.h>

#include "waferq.h"
#include "waferq_msg.h"

#define WAFERQ_IN_USE	0	/* bit in wq->in_use */

static enum waferq_state waferq_get_state(struct waferq_dev *wq)
{
	enum waferq_state state;

	spin_lock_irq(&wq->slock);
	state = wq->state;
	spin_unlock_irq(&wq->slock);
	return state;
}

static int waferq_lock(struct waferq_dev *wq)
{
	if (mutex_lock_interruptible(&wq->lock))
		return -ERESTARTSYS;
	if (wq->gone) {
		mutex_unlock(&wq->lock);
		return -ENODEV;
	}
	return 0;
}

/* Pulse the core's optional reset line (the FIFOs are emptied with it), then restart it. */
static void waferq_reset_core(struct waferq_dev *wq)
{
	if (wq->reset_gpio) {
		gpiod_set_value_cansleep(wq->reset_gpio, 1);
		usleep_range(10, 20);
		gpiod_set_value_cansleep(wq->reset_gpio, 0);
	}
	waferq_start_core(wq);
}

/*
 * Wait, lock held, until the outstanding reply is in; the reply is due
 * timeout_ms after its request was sent. A signal leaves it armed, so the
 * call can be restarted. A timeout stops both channels: the device is idle
 * and usable again.
 */
static int waferq_wait_reply(struct waferq_dev *wq, bool nonblock)
{
	long left;

	if (waferq_get_state(wq) == WAFERQ_READY)
		return 0;
	if (nonblock)
		return -EAGAIN;

	left = max_t(long, (long)(wq->deadline - jiffies), 0);
	left = wait_for_completion_interruptible_timeout(&wq->rx_done, left);
	if (left < 0)
		return -ERESTARTSYS;
	if (left > 0 || waferq_get_state(wq) == WAFERQ_READY)
		return 0;

	dev_warn(wq->dev, "no reply within %u ms of the request: receive aborted%s\n",
		 wq->timeout_ms, wq->reset_gpio ? ", core reset" : "");
	wq->stats.timeouts++;
	waferq_dma_abort(wq);
	waferq_reset_core(wq);
	return -ETIMEDOUT;
}

/*
 * Before a new request: a reply that nobody read (the caller gave up
 * waiting) is awaited and dropped, so that it cannot be taken for the reply
 * to the new request.
 */
static int waferq_settle(struct waferq_dev *wq, bool nonblock)
{
	int ret;

	if (waferq_get_state(wq) == WAFERQ_IDLE)
		return 0;
	ret = waferq_wait_reply(wq, nonblock);
	if (ret == -ETIMEDOUT)
		return 0;
	if (ret)
		return ret;
	dev_warn(wq->dev, "dropping an unread reply to make way for a new request\n");
	waferq_dma_abort(wq);
	return 0;
}

/* Check and send one message, lock held; arms the receive of its reply. */
static int waferq_send(struct waferq_dev *wq, const void __user *ubuf,
		       size_t len, bool nonblock)
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
	ret = waferq_dma_arm_rx(wq);
	if (ret) {
		wq->stats.errors++;
		return ret;
	}
	ret = waferq_dma_send(wq, ubuf, len);
	if (ret) {
		if (ret == -ETIMEDOUT)
			wq->stats.timeouts++;
		else if (ret != -EINTR)
			wq->stats.errors++;
		waferq_dma_abort(wq);
		return ret;
	}
	wq->deadline = jiffies + msecs_to_jiffies(wq->timeout_ms);
	wq->stats.tx_messages++;
	wq->stats.tx_bytes += len;
	return 0;
}

/* Length of the received reply, from the residue or the reply itself. */
static size_t waferq_reply_len(struct waferq_dev *wq, u32 residue)
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

/* Wait for the reply and copy it out, lock held. */
static ssize_t waferq_recv(struct waferq_dev *wq, void __user *ubuf,
			   size_t count, bool nonblock)
{
	enum dmaengine_tx_result result;
	const char *why;
	size_t len;
	u32 residue;
	int ret;

	if (waferq_get_state(wq) == WAFERQ_IDLE)
		return -ENOMSG;
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
		waferq_dma_abort(wq);
		return -EIO;
	}

	len = waferq_reply_len(wq, residue);
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

static int waferq_open(struct inode *inode, struct file *file)
{
	struct waferq_dev *wq = container_of(file->private_data,
					     struct waferq_dev, misc);

	if (test_and_set_bit(WAFERQ_IN_USE, &wq->in_use)) {
		dev_dbg(wq->dev, "already open: one opener at a time\n");
		return -EBUSY;
	}
	kref_get(&wq->ref);
	file->private_data = wq;
	return stream_open(inode, file);
}

static int waferq_release(struct inode *inode, struct file *file)
{
	struct waferq_dev *wq = file->private_data;

	mutex_lock(&wq->lock);
	if (!wq->gone)
		waferq_dma_abort(wq);
	mutex_unlock(&wq->lock);

	clear_bit(WAFERQ_IN_USE, &wq->in_use);
	waferq_put(wq);
	return 0;
}

static ssize_t waferq_write(struct file *file, const char __user *buf,
			    size_t count, loff_t *ppos)
{
	struct waferq_dev *wq = file->private_data;
	int ret;

	ret = waferq_lock(wq);
	if (ret)
		return ret;
	ret = waferq_send(wq, buf, count, file->f_flags & O_NONBLOCK);
	mutex_unlock(&wq->lock);
	return ret ? ret : count;
}

static ssize_t waferq_read(struct file *file, char __user *buf, size_t count,
			   loff_t *ppos)
{
	struct waferq_dev *wq = file->private_data;
	ssize_t ret;

	ret = waferq_lock(wq);
	if (ret)
		return ret;
	ret = waferq_recv(wq, buf, count, file->f_flags & O_NONBLOCK);
	mutex_unlock(&wq->lock);
	return ret;
}

static __poll_t waferq_poll(struct file *file, poll_table *wait)
{
	struct waferq_dev *wq = file->private_data;
	enum dmaengine_tx_result result;
	enum waferq_state state;

	poll_wait(file, &wq->waitq, wait);
	if (READ_ONCE(wq->gone))
		return EPOLLERR | EPOLLHUP;

	spin_lock_irq(&wq->slock);
	state = wq->state;
	result = wq->rx_result;
	spin_unlock_irq(&wq->slock);

	switch (state) {
	case WAFERQ_IDLE:
		return EPOLLOUT | EPOLLWRNORM;
	case WAFERQ_READY:
		if (result != DMA_TRANS_NOERROR)
			return EPOLLIN | EPOLLRDNORM | EPOLLERR;
		return EPOLLIN | EPOLLRDNORM;
	default:
		return 0;
	}
}

static long waferq_ioctl_submit(struct waferq_dev *wq,
				struct waferq_submit __user *argp)
{
	struct waferq_submit req;
	ssize_t len;
	int ret;

	if (copy_from_user(&req, argp, sizeof(req)))
		return -EFAULT;
	if (req.reserved)
		return -EINVAL;

	ret = waferq_send(wq, u64_to_user_ptr(req.tx_ptr), req.tx_len, false);
	if (ret)
		return ret;
	len = waferq_recv(wq, u64_to_user_ptr(req.rx_ptr), req.rx_len, false);
	/* The request is out: a restart would send it twice. */
	if (len == -ERESTARTSYS)
		return -EINTR;
	if (len < 0)
		return len;
	return put_user((u32)len, &argp->reply_len);
}

static long waferq_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	struct waferq_dev *wq = file->private_data;
	void __user *argp = (void __user *)arg;
	u32 ms;
	long ret;

	if (_IOC_TYPE(cmd) != WAFERQ_IOC_MAGIC || _IOC_NR(cmd) > WAFERQ_IOC_MAXNR)
		return -ENOTTY;

	ret = waferq_lock(wq);
	if (ret)
		return ret;

	switch (cmd) {
	case WAFERQ_IOC_RESET:
		waferq_dma_abort(wq);
		waferq_reset_core(wq);
		dev_info(wq->dev, "reset: transfers stopped%s\n",
			 wq->reset_gpio ? ", core reset" : "");
		break;
	case WAFERQ_IOC_GET_STATS:
		if (copy_to_user(argp, &wq->stats, sizeof(wq->stats)))
			ret = -EFAULT;
		break;
	case WAFERQ_IOC_SET_TIMEOUT:
		if (get_user(ms, (u32 __user *)argp)) {
			ret = -EFAULT;
			break;
		}
		if (ms < WAFERQ_TIMEOUT_MIN_MS || ms > WAFERQ_TIMEOUT_MAX_MS) {
			ret = -EINVAL;
			break;
		}
		wq->timeout_ms = ms;
		break;
	case WAFERQ_IOC_SUBMIT:
		ret = waferq_ioctl_submit(wq, argp);
		break;
	default:
		ret = -ENOTTY;
		break;
	}

	mutex_unlock(&wq->lock);
	return ret;
}

const struct file_operations waferq_fops = {
	.owner = THIS_MODULE,
	.open = waferq_open,
	.release = waferq_release,
	.read = waferq_read,
	.write = waferq_write,
	.poll = waferq_poll,
	.unlocked_ioctl = waferq_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = no_llseek,
};
