// SPDX-License-Identifier: GPL-2.0-only
/*
 * TEST ONLY, never part of the product: a dmaengine provider for the QEMU
 * test of the waferq driver (tests/qemu/). It offers two slave channels,
 * MM2S (index 0, "tx") and S2MM (index 1, "rx"), that behave like the Xilinx
 * AXI DMA under xilinx_dma where a client can see it:
 *
 * - descriptors come from a fixed pool per channel (255 before v6.6, 512
 *   after); one descriptor moves at most 2^26 - 4 bytes;
 * - residue is reported per descriptor; a receive ends at the end of a reply
 *   (TLAST), short of the buffer;
 * - terminate_all resets the whole DMA: both channels stop and lose their
 *   interrupt enables, and only the terminated channel gets them back (as
 *   xilinx_dma_chan_reset() does); a channel without interrupts completes
 *   its transfer silently and then stays busy for good; allocating a
 *   channel's resources enables its interrupts (xilinx_dma_alloc_chan_resources);
 * - an MM2S error is DMA_TRANS_WRITE_FAILED, an S2MM error READ_FAILED.
 *
 * Behind the channels sits a small model of the core: QUERY, LOAD_WEIGHTS
 * (any length; the reply is the payload checksum), INFER on an 8x8x1 image
 * with 4 classes, ERROR for a bad header or checksum, and reply bytes that a
 * test loads through /dev/waferq_testonly. It serves only while the core's
 * AP_CTRL has AUTO_RESTART set. The "csr" and "core" register windows are
 * plain memory here (reg of this node, a no-map reserved region); a kernel
 * thread plays the PL: it carries out CONTROL.SOFT_RESET (clears AP_CTRL and
 * the queued replies, then clears the bit).
 *
 * Knobs for the tests, /sys/module/waferq_testonly_dma/parameters/: stall_tx
 * (MM2S waits), hold_reply (replies wait), drop (swallow N requests),
 * late_reply (answer the next request with the previous reply first),
 * bogus_residue (next receive reports a residue of the whole buffer),
 * fail_tx (next MM2S fails); counters resets and soft_resets; leak (loses
 * allocations on purpose, for the kmemleak check's own test).
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/dmaengine.h>
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/of_dma.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>
#include <linux/version.h>
#include <linux/highmem.h>
#include <linux/vmalloc.h>
#include <asm/unaligned.h>

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

static bool stall_tx, hold_reply, late_reply, bogus_residue, fail_tx;
static unsigned int drop, resets, soft_resets, topology = 0x1234abcd;
static unsigned int version = WQ_CSR_VERSION_RESET;

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

static struct tmodel *the_tm;

/* Exported by drivers/dma/dmaengine.c; declared only in its private header. */
struct dma_chan *dma_get_slave_channel(struct dma_chan *chan);

static int tm_kick_set(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_bool(val, kp);

	if (!ret && the_tm)
		queue_work(system_unbound_wq, &the_tm->work);
	return ret;
}

static const struct kernel_param_ops tm_kick_ops = {
	.set = tm_kick_set,
	.get = param_get_bool,
};
module_param_cb(stall_tx, &tm_kick_ops, &stall_tx, 0644);
module_param_cb(hold_reply, &tm_kick_ops, &hold_reply, 0644);
module_param(late_reply, bool, 0644);
module_param(bogus_residue, bool, 0644);
module_param(fail_tx, bool, 0644);
module_param(drop, uint, 0644);
module_param(resets, uint, 0444);
module_param(soft_resets, uint, 0444);
module_param(topology, uint, 0444);
module_param(version, uint, 0444);

/*
 * leak: writing N loses N small allocations on purpose, so that the kmemleak
 * run (tests/qemu/run.sh with KMEMLEAK=1 WQ_LEAK=1) shows it fails and names
 * this module. Several, not one: a stale copy of a pointer (on a kernel stack,
 * or in a live object that once held a freed object at the same address) hides
 * that one from a scan; and 3000 bytes, a size class little used here, for
 * fewer such copies.
 */
static noinline void tm_leak_on_purpose(unsigned int n)
{
	u8 *p;

	while (n--) {
		p = kmalloc(3000, GFP_KERNEL);
		if (p)
			memset(p, 0xa5, 3000);
	}
}

static int tm_leak_set(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret = kstrtouint(val, 0, &n);

	if (!ret)
		tm_leak_on_purpose(min(n, 16u));
	return ret;
}

static const struct kernel_param_ops tm_leak_ops = {
	.set = tm_leak_set,
};
module_param_cb(leak, &tm_leak_ops, NULL, 0200);

static struct tm_chan *to_tm_chan(struct dma_chan *c)
{
	return container_of(c, struct tm_chan, chan);
}

static struct tmodel *chan_tm(struct tm_chan *c)
{
	return container_of(c - (c->is_tx ? 0 : 1), struct tmodel, ch[0]);
}

static void tm_free_desc(struct tm_chan *c, struct tm_desc *d)
{
	c->pool += d->nsegs;
	kfree(d->addr);
	kfree(d->seglen);
	kfree(d);
}

static void tm_free_list(struct tm_chan *c, struct list_head *l)
{
	struct tm_desc *d, *n;

	list_for_each_entry_safe(d, n, l, node) {
		list_del(&d->node);
		tm_free_desc(c, d);
	}
}

static dma_cookie_t tm_submit(struct dma_async_tx_descriptor *tx)
{
	struct tm_chan *c = to_tm_chan(tx->chan);
	struct tmodel *tm = chan_tm(c);
	struct tm_desc *d = container_of(tx, struct tm_desc, tx);
	unsigned long flags;
	dma_cookie_t cookie;

	spin_lock_irqsave(&tm->lock, flags);
	cookie = c->chan.cookie + 1;
	if (cookie < DMA_MIN_COOKIE)
		cookie = DMA_MIN_COOKIE;
	c->chan.cookie = cookie;
	tx->cookie = cookie;
	list_add_tail(&d->node, &c->submitted);
	spin_unlock_irqrestore(&tm->lock, flags);
	return cookie;
}

static struct dma_async_tx_descriptor *
tm_prep_slave_sg(struct dma_chan *chan, struct scatterlist *sgl,
		 unsigned int sg_len, enum dma_transfer_direction dir,
		 unsigned long flags, void *context)
{
	struct tm_chan *c = to_tm_chan(chan);
	struct tmodel *tm = chan_tm(c);
	struct scatterlist *sg;
	unsigned long lflags;
	unsigned int i, need = 0;
	struct tm_desc *d;

	if ((dir == DMA_MEM_TO_DEV) != c->is_tx)
		return NULL;
	for_each_sg(sgl, sg, sg_len, i)
		need += DIV_ROUND_UP(sg_dma_len(sg), TM_SEG_MAX);
	d = kzalloc(sizeof(*d), GFP_NOWAIT);
	if (!d)
		return NULL;
	d->addr = kcalloc(sg_len, sizeof(*d->addr), GFP_NOWAIT);
	d->seglen = kcalloc(sg_len, sizeof(*d->seglen), GFP_NOWAIT);
	if (!d->addr || !d->seglen)
		goto err;
	for_each_sg(sgl, sg, sg_len, i) {
		d->addr[i] = sg_dma_address(sg);
		d->seglen[i] = sg_dma_len(sg);
		d->len += sg_dma_len(sg);
	}
	d->n = sg_len;
	spin_lock_irqsave(&tm->lock, lflags);
	/* xilinx_dma: no free segment, no descriptor. */
	if (need > c->pool) {
		spin_unlock_irqrestore(&tm->lock, lflags);
		goto err;
	}
	c->pool -= need;
	d->nsegs = need;
	spin_unlock_irqrestore(&tm->lock, lflags);
	dma_async_tx_descriptor_init(&d->tx, chan);
	d->tx.tx_submit = tm_submit;
	d->tx.flags = flags;
	return &d->tx;
err:
	kfree(d->addr);
	kfree(d->seglen);
	kfree(d);
	return NULL;
}

static void tm_issue_pending(struct dma_chan *chan)
{
	struct tm_chan *c = to_tm_chan(chan);
	struct tmodel *tm = chan_tm(c);
	unsigned long flags;

	spin_lock_irqsave(&tm->lock, flags);
	list_splice_tail_init(&c->submitted, &c->issued);
	spin_unlock_irqrestore(&tm->lock, flags);
	queue_work(system_unbound_wq, &tm->work);
}

static enum dma_status tm_tx_status(struct dma_chan *chan, dma_cookie_t cookie,
				    struct dma_tx_state *state)
{
	enum dma_status st = dma_async_is_complete(cookie,
						   chan->completed_cookie,
						   chan->cookie);

	dma_set_tx_state(state, chan->completed_cookie, chan->cookie, 0);
	return st;
}

/* One reset for both channels, as on the AXI DMA. */
static int tm_terminate_all(struct dma_chan *chan)
{
	struct tm_chan *c = to_tm_chan(chan);
	struct tmodel *tm = chan_tm(c);
	unsigned long flags;
	int i;

	spin_lock_irqsave(&tm->lock, flags);
	resets++;
	for (i = 0; i < 2; i++) {
		struct tm_chan *o = &tm->ch[i];

		o->irq_en = false;
		/* The other channel's running transfer is lost with the reset. */
		if (o != c && !list_empty(&o->issued))
			o->stuck = true;
	}
	tm_free_list(c, &c->submitted);
	tm_free_list(c, &c->issued);
	c->stuck = false;
	c->irq_en = true;
	spin_unlock_irqrestore(&tm->lock, flags);
	return 0;
}

static void tm_synchronize(struct dma_chan *chan)
{
	flush_work(&chan_tm(to_tm_chan(chan))->work);
}

static int tm_alloc(struct dma_chan *chan)
{
	struct tm_chan *c = to_tm_chan(chan);
	unsigned long flags;

	spin_lock_irqsave(&chan_tm(c)->lock, flags);
	c->pool = TM_POOL;
	c->irq_en = true;
	spin_unlock_irqrestore(&chan_tm(c)->lock, flags);
	chan->completed_cookie = DMA_MIN_COOKIE;
	chan->cookie = DMA_MIN_COOKIE;
	return 0;
}

static void tm_free(struct dma_chan *chan)
{
	struct tm_chan *c = to_tm_chan(chan);
	struct tmodel *tm = chan_tm(c);
	unsigned long flags;

	flush_work(&tm->work);
	spin_lock_irqsave(&tm->lock, flags);
	tm_free_list(c, &c->submitted);
	tm_free_list(c, &c->issued);
	spin_unlock_irqrestore(&tm->lock, flags);
}

static int tm_config(struct dma_chan *chan, struct dma_slave_config *cfg)
{
	return 0;
}

/* Copy between a bus address (== physical here, no IOMMU) and a buffer. */
static void tm_copy(dma_addr_t addr, void *buf, size_t len, bool to_mem)
{
	while (len) {
		size_t off = offset_in_page(addr);
		size_t n = min_t(size_t, len, PAGE_SIZE - off);
		void *p = kmap_local_page(pfn_to_page(PHYS_PFN(addr)));

		if (to_mem)
			memcpy(p + off, buf, n);
		else
			memcpy(buf, p + off, n);
		kunmap_local(p);
		addr += n;
		buf += n;
		len -= n;
	}
}

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
static void tm_core(struct tmodel *tm, size_t len)
{
	const u8 *m = tm->msg;
	size_t words = len / 4, i;
	u32 head, n, tag, sum = 0, p[10] = { 0 };

	if (!(readl(tm->regs + TM_CORE_OFF) & TM_AUTO_RESTART))
		return;		/* not started: the request sits in the FIFO */
	if (drop) {
		drop--;
		return;
	}
	if (late_reply && tm->last) {
		late_reply = false;
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
		p[0] = topology;
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

static void tm_callback(struct tm_desc *d, enum dmaengine_tx_result result,
			u32 residue)
{
	struct dmaengine_result res = { .result = result, .residue = residue };

	if (d->tx.callback_result)
		d->tx.callback_result(d->tx.callback_param, &res);
	else if (d->tx.callback)
		d->tx.callback(d->tx.callback_param);
}

/* Finish the head descriptor of @c; lock held, dropped for the callback. */
static void tm_complete(struct tmodel *tm, struct tm_chan *c, struct tm_desc *d,
			enum dmaengine_tx_result result, u32 residue,
			unsigned long *flags)
{
	if (!c->irq_en) {
		/* Done in the hardware, but xilinx_dma never hears of it. */
		c->stuck = true;
		return;
	}
	list_del(&d->node);
	c->chan.completed_cookie = d->tx.cookie;
	spin_unlock_irqrestore(&tm->lock, *flags);
	tm_callback(d, result, residue);
	spin_lock_irqsave(&tm->lock, *flags);
	tm_free_desc(c, d);
}

/* The hardware: move whatever can move. */
static void tm_work(struct work_struct *work)
{
	struct tmodel *tm = container_of(work, struct tmodel, work);
	struct tm_chan *tx = &tm->ch[0], *rx = &tm->ch[1];
	enum dmaengine_tx_result res;
	struct tm_reply *r;
	struct tm_desc *d;
	unsigned long flags;
	bool progress = true;
	size_t off, n;
	u32 residue;
	unsigned int i;

	spin_lock_irqsave(&tm->lock, flags);
	while (progress) {
		progress = false;
		d = list_first_entry_or_null(&tx->issued, struct tm_desc, node);
		if (d && !tx->stuck && !stall_tx) {
			res = DMA_TRANS_NOERROR;
			if (fail_tx) {
				fail_tx = false;
				res = DMA_TRANS_WRITE_FAILED;
			} else if (d->len <= TM_MSG_MAX) {
				for (i = 0, off = 0; i < d->n; off += d->seglen[i++])
					tm_copy(d->addr[i], tm->msg + off,
						d->seglen[i], false);
				/* the last beat carries TLAST: one message */
				tm_core(tm, d->len);
			}
			tm_complete(tm, tx, d, res, 0, &flags);
			progress = true;
		}
		d = list_first_entry_or_null(&rx->issued, struct tm_desc, node);
		r = list_first_entry_or_null(&tm->replies, struct tm_reply,
					     node);
		if (d && r && !rx->stuck && !hold_reply) {
			list_del(&r->node);
			n = min(r->len, d->len);
			for (i = 0, off = 0; i < d->n && off < n; off += d->seglen[i++])
				tm_copy(d->addr[i], r->data + off,
					min_t(size_t, d->seglen[i], n - off), true);
			residue = d->len - n;
			if (bogus_residue) {
				bogus_residue = false;
				residue = d->len;
			}
			kfree(r);
			tm_complete(tm, rx, d, DMA_TRANS_NOERROR, residue, &flags);
			progress = true;
		}
	}
	spin_unlock_irqrestore(&tm->lock, flags);
}

/* The PL's side of the register windows. */
static int tm_pl_thread(void *data)
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
			soft_resets++;
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

static const struct file_operations tm_fops = {
	.owner = THIS_MODULE,
	.write = tm_load,
	.mmap = tm_mmap,
};

static struct dma_chan *tm_xlate(struct of_phandle_args *args,
				 struct of_dma *ofdma)
{
	struct tmodel *tm = ofdma->of_dma_data;

	if (args->args_count != 1 || args->args[0] > 1)
		return NULL;
	return dma_get_slave_channel(&tm->ch[args->args[0]].chan);
}

static void tm_vfree(void *p)
{
	vfree(p);
}

static int tm_probe(struct platform_device *pdev)
{
	struct resource *res;
	struct tmodel *tm;
	int i, ret;

	tm = devm_kzalloc(&pdev->dev, sizeof(*tm), GFP_KERNEL);
	if (!tm)
		return -ENOMEM;
	tm->dev = &pdev->dev;
	spin_lock_init(&tm->lock);
	INIT_WORK(&tm->work, tm_work);
	INIT_LIST_HEAD(&tm->replies);
	res = platform_get_resource(pdev, IORESOURCE_MEM, 0);
	if (!res)
		return -EINVAL;
	/* Shared with the waferq node, which requests the region. */
	tm->regs = devm_ioremap(&pdev->dev, res->start, resource_size(res));
	if (!tm->regs)
		return -ENOMEM;
	/*
	 * vmalloc: 4 MiB plus the devres header is an order-11 page block, which
	 * armmp (MAX_ORDER 12) has and the kmemleak kernel (11) has not.
	 */
	tm->msg = vmalloc(TM_MSG_MAX);
	if (!tm->msg)
		return -ENOMEM;
	ret = devm_add_action_or_reset(&pdev->dev, tm_vfree, tm->msg);
	if (ret)
		return ret;
	tm->big = alloc_pages(GFP_KERNEL | __GFP_ZERO, TM_BIG_ORDER);
	if (!tm->big)
		return -ENOMEM;
	split_page(tm->big, TM_BIG_ORDER);

	memset_io(tm->regs, 0, 0x100);
	writel(version, tm->regs + WQ_CSR_VERSION_ADDR);
	writel(topology, tm->regs + WQ_CSR_TOPOLOGY_HASH_ADDR);
	writel(WQ_GUARD_MAX_WORDS, tm->regs + WQ_CSR_MAX_WORDS_ADDR);
	writel(0, tm->regs + TM_CORE_OFF);

	dma_cap_set(DMA_SLAVE, tm->dd.cap_mask);
	dma_cap_set(DMA_PRIVATE, tm->dd.cap_mask);
	tm->dd.dev = &pdev->dev;
	tm->dd.device_alloc_chan_resources = tm_alloc;
	tm->dd.device_free_chan_resources = tm_free;
	tm->dd.device_prep_slave_sg = tm_prep_slave_sg;
	tm->dd.device_issue_pending = tm_issue_pending;
	tm->dd.device_tx_status = tm_tx_status;
	tm->dd.device_terminate_all = tm_terminate_all;
	tm->dd.device_synchronize = tm_synchronize;
	tm->dd.device_config = tm_config;
	tm->dd.directions = BIT(DMA_MEM_TO_DEV) | BIT(DMA_DEV_TO_MEM);
	tm->dd.residue_granularity = DMA_RESIDUE_GRANULARITY_DESCRIPTOR;
	tm->dd.src_addr_widths = BIT(DMA_SLAVE_BUSWIDTH_4_BYTES);
	tm->dd.dst_addr_widths = BIT(DMA_SLAVE_BUSWIDTH_4_BYTES);
	INIT_LIST_HEAD(&tm->dd.channels);
	for (i = 0; i < 2; i++) {
		tm->ch[i].is_tx = i == 0;
		tm->ch[i].chan.device = &tm->dd;
		INIT_LIST_HEAD(&tm->ch[i].submitted);
		INIT_LIST_HEAD(&tm->ch[i].issued);
		list_add_tail(&tm->ch[i].chan.device_node, &tm->dd.channels);
	}
	dma_set_max_seg_size(&pdev->dev, TM_SEG_MAX);
	ret = dma_async_device_register(&tm->dd);
	if (ret)
		goto err_pages;
	ret = of_dma_controller_register(pdev->dev.of_node, tm_xlate, tm);
	if (ret)
		goto err_dd;
	tm->misc.minor = MISC_DYNAMIC_MINOR;
	tm->misc.name = "waferq_testonly";
	tm->misc.fops = &tm_fops;
	ret = misc_register(&tm->misc);
	if (ret)
		goto err_of;
	tm->pl = kthread_run(tm_pl_thread, tm, "waferq_testonly_pl");
	if (IS_ERR(tm->pl)) {
		ret = PTR_ERR(tm->pl);
		goto err_misc;
	}
	the_tm = tm;
	platform_set_drvdata(pdev, tm);
	dev_info(&pdev->dev, "TEST-ONLY AXI DMA model: pool %u descriptors per channel\n",
		 TM_POOL);
	return 0;

err_misc:
	misc_deregister(&tm->misc);
err_of:
	of_dma_controller_free(pdev->dev.of_node);
err_dd:
	dma_async_device_unregister(&tm->dd);
err_pages:
	for (i = 0; i < (1 << TM_BIG_ORDER); i++)
		__free_page(tm->big + i);
	return ret;
}

static void tm_do_remove(struct platform_device *pdev)
{
	struct tmodel *tm = platform_get_drvdata(pdev);
	struct tm_reply *r, *n;
	int i;

	kthread_stop(tm->pl);
	misc_deregister(&tm->misc);
	of_dma_controller_free(pdev->dev.of_node);
	dma_async_device_unregister(&tm->dd);
	flush_work(&tm->work);
	the_tm = NULL;
	list_for_each_entry_safe(r, n, &tm->replies, node)
		kfree(r);
	kfree(tm->loaded);
	kfree(tm->last);
	for (i = 0; i < (1 << TM_BIG_ORDER); i++)
		__free_page(tm->big + i);
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
static void tm_remove(struct platform_device *pdev)
{
	tm_do_remove(pdev);
}
#else
static int tm_remove(struct platform_device *pdev)
{
	tm_do_remove(pdev);
	return 0;
}
#endif

static const struct of_device_id tm_of_match[] = {
	{ .compatible = "waferq-testonly,axi-dma-model" },
	{ }
};
MODULE_DEVICE_TABLE(of, tm_of_match);

static struct platform_driver tm_driver = {
	.probe = tm_probe,
	.remove = tm_remove,
	.driver = {
		.name = "waferq_testonly_dma",
		.of_match_table = tm_of_match,
	},
};
module_platform_driver(tm_driver);

MODULE_DESCRIPTION("TEST ONLY: AXI DMA and waferq core model for the QEMU test");
MODULE_LICENSE("GPL");
