// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq DMA resources: the two dmaengine channels of the AXI DMA and the
 * coherent receive buffer, taken at probe and released after remove(), all
 * device-managed. The transfers on them are waferq_dma.c's.
 */
#include <linux/device.h>
#include <linux/dma-mapping.h>

#include "waferq.h"

/**
 * waferq_request_chans() - take the "tx" and "rx" channels of the device tree
 * @wq: the device (probe, or an abort that gives them back and takes them again)
 *
 * Return: 0 or a negative errno, both channels taken or neither.
 */
int waferq_request_chans(struct waferq_dev *wq)
{
	struct dma_chan *tx, *rx;

	tx = dma_request_chan(wq->dev, WAFERQ_DMA_TX_NAME);
	if (IS_ERR(tx))
		return dev_err_probe(wq->dev, PTR_ERR(tx),
				     "no \"%s\" DMA channel: check dmas and dma-names in the device tree\n",
				     WAFERQ_DMA_TX_NAME);
	rx = dma_request_chan(wq->dev, WAFERQ_DMA_RX_NAME);
	if (IS_ERR(rx)) {
		dma_release_channel(tx);
		return dev_err_probe(wq->dev, PTR_ERR(rx),
				     "no \"%s\" DMA channel: check dmas and dma-names in the device tree\n",
				     WAFERQ_DMA_RX_NAME);
	}
	wq->tx_chan = tx;
	wq->rx_chan = rx;
	return 0;
}

/**
 * waferq_dma_release() - give both channels back
 * @wq: the device, lock held (or probe/remove)
 */
void waferq_dma_release(struct waferq_dev *wq)
{
	if (wq->tx_chan)
		dma_release_channel(wq->tx_chan);
	if (wq->rx_chan)
		dma_release_channel(wq->rx_chan);
	wq->tx_chan = NULL;
	wq->rx_chan = NULL;
}

static void waferq_release_action(void *data)
{
	waferq_dma_release(data);
}

static void waferq_free_rx_buf(void *data)
{
	struct waferq_dev *wq = data;

	dma_free_coherent(wq->dma_dev, wq->rx_size, wq->rx_buf, wq->rx_dma);
	put_device(wq->dma_dev);
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

	ret = waferq_request_chans(wq);
	if (ret)
		return ret;
	ret = devm_add_action_or_reset(wq->dev, waferq_release_action, wq);
	if (ret)
		return ret;

	/* The DMA engine does the memory accesses: map for its device. */
	wq->dma_dev = get_device(wq->rx_chan->device->dev);
	wq->rx_size = rx_size;
	wq->rx_buf = dma_alloc_coherent(wq->dma_dev, rx_size, &wq->rx_dma,
					GFP_KERNEL);
	if (!wq->rx_buf) {
		put_device(wq->dma_dev);
		return -ENOMEM;
	}
	return devm_add_action_or_reset(wq->dev, waferq_free_rx_buf, wq);
}
