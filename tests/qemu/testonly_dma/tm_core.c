// SPDX-License-Identifier: GPL-2.0-only
/*
 * TEST ONLY, never part of the product: the QEMU test's model of the waferq
 * core behind the DMA channels (the requests it answers are listed in
 * tm_main.c), the kernel thread that plays the PL's side of the CSRs, and
 * /dev/waferq_testonly, through which a test loads raw reply bytes and maps
 * pages in a known order.
 */
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/uaccess.h>
#include <asm/unaligned.h>

#include "tm.h"

static u32 tm_word(const u8 *b, size_t i)
{
	return get_unaligned_le32(b + 4 * i);
}

static void tm_queue_reply(struct tmodel *tm, u32 op, u32 tag, const u32 *p,
			   u32 n)
{
	struct tm_reply *r;
	u32 w[3], sum, i;

	r = kmalloc(sizeof(*r) + (n + 4) * 4, GFP_ATOMIC);
	if (!r)
		return;
	w[0] = WQ_MAGIC << 16 | WQ_VERSION << 8 | op;
	w[1] = n;
	w[2] = tag;
	sum = w[0] + w[1] + w[2];
	for (i = 0; i < 3; i++)
		put_unaligned_le32(w[i], r->data + 4 * i);
	for (i = 0; i < n; i++) {
		put_unaligned_le32(p[i], r->data + 4 * (3 + i));
		sum += p[i];
	}
	put_unaligned_le32(sum, r->data + 4 * (3 + n));
	r->len = (n + 4) * 4;
	list_add_tail(&r->node, &tm->replies);
	kfree(tm->last);
	tm->last = kmemdup(r->data, r->len, GFP_ATOMIC);
	tm->last_len = tm->last ? r->len : 0;
}

static void tm_push_raw(struct tmodel *tm, const u8 *data, size_t len)
{
	struct tm_reply *r = kmalloc(sizeof(*r) + len, GFP_ATOMIC);

	if (!r)
		return;
	memcpy(r->data, data, len);
	r->len = len;
	list_add_tail(&r->node, &tm->replies);
}

static void tm_error(struct tmodel *tm, u32 tag, u32 code, u32 detail)
{
	u32 p[2] = { code, detail };

	tm_queue_reply(tm, WQ_OP_ERROR, tag, p, 2);
}

/* The core: one whole message in, one reply queued; lock held. */
void tm_core(struct tmodel *tm, size_t len)
{
	const u8 *m = tm->msg;
	size_t words = len / 4, i;
	u32 head, n, tag, sum = 0, p[10] = { 0 };

	if (!(readl(tm->regs + TM_CORE_OFF) & TM_AUTO_RESTART))
		return;		/* not started: the request sits in the FIFO */
	if (tm_drop) {
		tm_drop--;
		return;
	}
	if (tm_late_reply && tm->last) {
		tm_late_reply = false;
		tm_push_raw(tm, tm->last, tm->last_len);
	}
	if (tm->loaded) {
		tm_push_raw(tm, tm->loaded, tm->loaded_len);
		kfree(tm->loaded);
		tm->loaded = NULL;
		return;
	}
	if (words < 4) {
		tm_error(tm, 0, WQ_ERR_BAD_LENGTH, words);
		return;
	}
	head = tm_word(m, 0);
	n = tm_word(m, 1);
	tag = tm_word(m, 2);
	for (i = 0; i + 1 < words; i++)
		sum += tm_word(m, i);
	if (head >> 16 != WQ_MAGIC)
		return tm_error(tm, tag, WQ_ERR_BAD_MAGIC, head >> 16);
	if ((head >> 8 & 0xff) != WQ_VERSION)
		return tm_error(tm, tag, WQ_ERR_BAD_VERSION, head >> 8 & 0xff);
	if (n != words - 4)
		return tm_error(tm, tag, WQ_ERR_BAD_LENGTH, n);
	if (sum != tm_word(m, words - 1))
		return tm_error(tm, tag, WQ_ERR_BAD_CHECKSUM, 0);

	switch (head & 0xff) {
	case WQ_OP_QUERY:
		p[0] = tm_topology;
		p[1] = 1;
		p[2] = 3;
		p[3] = tm->weights;
		p[4] = 8;
		p[5] = 8;
		p[6] = 1;
		p[7] = 4;
		p[8] = WQ_MAX_MESSAGE_WORDS - 4;
		p[9] = tm->weights_sum;
		return tm_queue_reply(tm, WQ_OP_QUERY | WQ_REPLY_BIT, tag, p, 10);
	case WQ_OP_LOAD_WEIGHTS:
		tm->weights = true;
		tm->weights_sum = 0;
		for (i = 0; i < n; i++)
			tm->weights_sum += tm_word(m, 3 + i);
		p[0] = tm->weights_sum;
		return tm_queue_reply(tm, WQ_OP_LOAD_WEIGHTS | WQ_REPLY_BIT,
				      tag, p, 1);
	case WQ_OP_INFER:
		if (!tm->weights)
			return tm_error(tm, tag, WQ_ERR_NO_WEIGHTS, 0);
		if (n != 16)
			return tm_error(tm, tag, WQ_ERR_BAD_LENGTH, n);
		/* logit k: sum of the pixels i with i % 4 == k */
		for (i = 0; i < 64; i++)
			p[1 + i % 4] += m[12 + i];
		for (i = 1; i < 4; i++)
			if (p[1 + i] > p[1 + p[0]])
				p[0] = i;
		return tm_queue_reply(tm, WQ_OP_INFER | WQ_REPLY_BIT, tag, p, 5);
	default:
		return tm_error(tm, tag, WQ_ERR_UNKNOWN_OPCODE, head & 0xff);
	}
}

/* The PL's side of the register windows. */
int tm_pl_thread(void *data)
{
	struct tmodel *tm = data;
	struct tm_reply *r, *n;
	unsigned long flags;

	while (!kthread_should_stop()) {
		if (readl(tm->regs + WQ_CSR_CONTROL_ADDR) &
		    WQ_CSR_CONTROL_SOFT_RESET_MASK) {
			spin_lock_irqsave(&tm->lock, flags);
			list_for_each_entry_safe(r, n, &tm->replies, node) {
				list_del(&r->node);
				kfree(r);
			}
			tm_soft_resets++;
			spin_unlock_irqrestore(&tm->lock, flags);
			writel(0, tm->regs + TM_CORE_OFF);
			writel(0, tm->regs + WQ_CSR_CONTROL_ADDR);
		}
		usleep_range(200, 500);
	}
	return 0;
}

static ssize_t tm_load(struct file *f, const char __user *buf, size_t len,
		       loff_t *ppos)
{
	struct tmodel *tm = the_tm;
	unsigned long flags;
	u8 *p;

	p = memdup_user(buf, len);
	if (IS_ERR(p))
		return PTR_ERR(p);
	spin_lock_irqsave(&tm->lock, flags);
	kfree(tm->loaded);
	tm->loaded = p;
	tm->loaded_len = len;
	spin_unlock_irqrestore(&tm->lock, flags);
	return len;
}

/* pgoff 0: 4 MiB of contiguous pages in order; pgoff 1: the same reversed. */
static int tm_mmap(struct file *f, struct vm_area_struct *vma)
{
	unsigned long npages = 1UL << TM_BIG_ORDER, i;
	bool reversed = vma->vm_pgoff == 1;
	int ret;

	if (vma->vm_end - vma->vm_start != npages << PAGE_SHIFT ||
	    vma->vm_pgoff > 1)
		return -EINVAL;
	for (i = 0; i < npages; i++) {
		ret = vm_insert_page(vma, vma->vm_start + (i << PAGE_SHIFT),
				     the_tm->big + (reversed ? npages - 1 - i : i));
		if (ret)
			return ret;
	}
	return 0;
}

const struct file_operations tm_fops = {
	.owner = THIS_MODULE,
	.write = tm_load,
	.mmap = tm_mmap,
};
