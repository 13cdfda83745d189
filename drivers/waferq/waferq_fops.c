// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq file operations: one write() sends one whole message, one read()
 * returns one whole reply, poll() reports a ready reply, and the ioctls of
 * <linux/waferq.h>. The exchange itself, and its locking, is waferq_xfer.c's.
 *
 * One opener at a time (a second open() fails with -EBUSY); within that
 * opener, one request in flight at a time.
 */
#include <linux/fs.h>
#include <linux/kernel.h>
#include <linux/poll.h>
#include <linux/uaccess.h>

#include "waferq.h"

#define WAFERQ_IN_USE	0	/* bit in wq->in_use */

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
		waferq_recover(wq, 0);
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

	ret = waferq_lock_io(wq);
	if (ret)
		return ret;
	ret = waferq_send(wq, buf, count, file->f_flags & O_NONBLOCK);
	waferq_unlock_io(wq);
	return ret ? ret : count;
}

static ssize_t waferq_read(struct file *file, char __user *buf, size_t count,
			   loff_t *ppos)
{
	struct waferq_dev *wq = file->private_data;
	ssize_t ret;

	ret = waferq_lock_io(wq);
	if (ret)
		return ret;
	ret = waferq_recv(wq, buf, count, file->f_flags & O_NONBLOCK);
	waferq_unlock_io(wq);
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

	ret = waferq_lock_io(wq);
	if (ret)
		return ret;
	ret = waferq_send(wq, u64_to_user_ptr(req.tx_ptr), req.tx_len, false);
	if (!ret) {
		len = waferq_recv(wq, u64_to_user_ptr(req.rx_ptr), req.rx_len,
				  false);
		/* The request is out: a restart would send it twice. */
		if (len == -ERESTARTSYS)
			ret = -EINTR;
		else if (len < 0)
			ret = len;
		else
			ret = put_user((u32)len, &argp->reply_len);
	}
	waferq_unlock_io(wq);
	return ret;
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
	if (cmd == WAFERQ_IOC_SUBMIT)
		return waferq_ioctl_submit(wq, argp);

	ret = waferq_lock(wq);
	if (ret)
		return ret;

	switch (cmd) {
	case WAFERQ_IOC_RESET:
		waferq_dma_abort(wq, 0);
		ret = waferq_core_reset(wq);
		dev_info(wq->dev, "reset: transfers stopped, core reset\n");
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
	case WAFERQ_IOC_GET_API_VERSION:
		ret = put_user((u32)WAFERQ_API_VERSION, (u32 __user *)argp);
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
#ifndef WAFERQ_VOID_REMOVE
	/* stream_open() already refuses seeks; 6.11 dropped no_llseek. */
	.llseek = no_llseek,
#endif
};
