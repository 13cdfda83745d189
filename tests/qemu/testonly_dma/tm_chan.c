// SPDX-License-Identifier: GPL-2.0-only
/*
 * TEST ONLY, never part of the product: the dmaengine side of the QEMU test's
 * AXI DMA model, two slave channels that behave like xilinx_dma where a
 * client can see it (tm_main.c lists how), and the work item that plays the
 * hardware moving bytes between them and the core model (tm_core.c).
 */
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>

#include "tm.h"

/* Exported by drivers/dma/dmaengine.c; declared only in its private header. */
struct dma_chan *dma_get_slave_channel(struct dma_chan *chan);

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
	tm_resets++;
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
		if (d && !tx->stuck && !tm_stall_tx) {
			res = DMA_TRANS_NOERROR;
			if (tm_fail_tx) {
				tm_fail_tx = false;
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
		if (d && r && !rx->stuck && !tm_hold_reply) {
			list_del(&r->node);
			n = min(r->len, d->len);
			for (i = 0, off = 0; i < d->n && off < n; off += d->seglen[i++])
				tm_copy(d->addr[i], r->data + off,
					min_t(size_t, d->seglen[i], n - off), true);
			residue = d->len - n;
			if (tm_bogus_residue) {
				tm_bogus_residue = false;
				residue = d->len;
			}
			kfree(r);
			tm_complete(tm, rx, d, DMA_TRANS_NOERROR, residue, &flags);
			progress = true;
		}
	}
	spin_unlock_irqrestore(&tm->lock, flags);
}

struct dma_chan *tm_xlate(struct of_phandle_args *args,
			  struct of_dma *ofdma)
{
	struct tmodel *tm = ofdma->of_dma_data;

	if (args->args_count != 1 || args->args[0] > 1)
		return NULL;
	return dma_get_slave_channel(&tm->ch[args->args[0]].chan);
}

/* The dma_device and its two channels; registering is the caller's. */
void tm_dma_init(struct tmodel *tm)
{
	int i;

	INIT_WORK(&tm->work, tm_work);
	dma_cap_set(DMA_SLAVE, tm->dd.cap_mask);
	dma_cap_set(DMA_PRIVATE, tm->dd.cap_mask);
	tm->dd.dev = tm->dev;
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
}
