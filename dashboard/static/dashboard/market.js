// One market: a candlestick chart with volume (history from the candles API, the forming
// candle live), a timeframe switch, the trade tape and the order book.
"use strict";

(() => {
  const script = document.currentScript;
  const initial = TCP.data("market-data");
  const SECONDS = { "1s": 1, "1m": 60, "5m": 300, "15m": 900, "1h": 3600, "4h": 14400, "1d": 86400 };
  const MAX_GAP_FILL = 2000; // whitespace slots added for one gap; a longer one reloads
  const TAPE_LENGTH = 50;
  const UP = "#26a69a";
  const DOWN = "#ef5350";

  const state = {
    timeframe: initial.timeframe,
    first: null, // time (s) of the first slot on the chart
    last: null, // time (s) of the last slot on the chart
    source: null,
    precision: 2,
  };
  // For tests and benchmarks: what was drawn, and when.
  window.tcpMarket = { timeframe: state.timeframe, bars: 0, finals: [], loaded: false, updates: 0 };

  const container = document.getElementById("chart");
  const chart = LightweightCharts.createChart(container, {
    autoSize: true,
    layout: { background: { color: "#ffffff" }, textColor: "#222" },
    grid: { vertLines: { color: "#eee" }, horzLines: { color: "#eee" } },
    rightPriceScale: { scaleMargins: { top: 0.08, bottom: 0.25 } },
    timeScale: { timeVisible: true, secondsVisible: true, rightOffset: 3 },
    localization: { timeFormatter: (time) => `${TCP.utc(time * 1000)} UTC` },
  });
  const candles = chart.addSeries(LightweightCharts.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
  });
  const volume = chart.addSeries(LightweightCharts.HistogramSeries, {
    priceFormat: { type: "volume" }, priceScaleId: "volume", lastValueVisible: false, priceLineVisible: false,
  });
  chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });

  function decimals(value) {
    const s = String(value);
    return s.includes(".") ? s.split(".")[1].replace(/0+$/, "").length : 0;
  }

  function bar(candle) {
    const time = Date.parse(candle.timestamp) / 1000;
    return {
      candle: {
        time, open: Number(candle.open), high: Number(candle.high), low: Number(candle.low),
        close: Number(candle.close),
      },
      volume: { time, value: Number(candle.volume), color: Number(candle.close) >= Number(candle.open) ? UP + "88" : DOWN + "88" },
    };
  }

  function setPrecision(list) {
    const places = Math.min(8, Math.max(2, ...list.slice(-50).map((c) => decimals(c.close))));
    if (places !== state.precision) {
      state.precision = places;
      candles.applyOptions({ priceFormat: { type: "price", precision: places, minMove: 10 ** -places } });
    }
  }

  // Every interval from the first candle to now gets a slot: a candle, or whitespace (a gap).
  function slots(list, width, until) {
    const byTime = new Map(list.map((c) => [Date.parse(c.timestamp) / 1000, c]));
    const candleData = [];
    const volumeData = [];
    if (!list.length) return { candleData, volumeData };
    const first = Date.parse(list[0].timestamp) / 1000;
    const last = Math.max(Date.parse(list[list.length - 1].timestamp) / 1000, until);
    for (let time = first; time <= last; time += width) {
      const found = byTime.get(time);
      if (found) {
        const { candle, volume: v } = bar(found);
        candleData.push(candle);
        volumeData.push(v);
      } else {
        candleData.push({ time });
        volumeData.push({ time });
      }
    }
    return { candleData, volumeData };
  }

  async function load(timeframe) {
    const width = SECONDS[timeframe];
    const nowS = Date.now() / 1000;
    const closedUntil = Math.floor(nowS / width) * width; // newest closed interval's end
    const start = new Date((closedUntil - width * initial.bars) * 1000).toISOString();
    const params = new URLSearchParams({
      exchange: initial.exchange, symbol: initial.symbol, timeframe, start,
      include_partial: "true", limit: "5000",
    });
    const response = await fetch(`${script.dataset.candles}?${params}`, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!response.ok) throw new Error(`candles API answered ${response.status}`);
    const list = (await response.json()).results;
    const { candleData, volumeData } = slots(list, width, closedUntil);
    setPrecision(list);
    candles.setData(candleData);
    volume.setData(volumeData);
    state.first = candleData.length ? candleData[0].time : null;
    state.last = candleData.length ? candleData[candleData.length - 1].time : null;
    window.tcpMarket.bars = candleData.filter((c) => c.open !== undefined).length;
    window.tcpMarket.gaps = candleData.filter((c) => c.open === undefined).map((c) => c.time);
    window.tcpMarket.loaded = true;
    chart.timeScale().scrollToRealTime();
  }

  function applyCandle(message) {
    if (message.timeframe !== state.timeframe) return;
    const width = SECONDS[state.timeframe];
    const { candle, volume: v } = bar(message);
    const time = candle.time;
    if (state.last === null) {
      state.first = state.last = time;
      candles.update(candle);
      volume.update(v);
    } else if (time > state.last) {
      if ((time - state.last) / width > MAX_GAP_FILL) {
        reload();
        return;
      }
      for (let gap = state.last + width; gap < time; gap += width) {
        candles.update({ time: gap });
        volume.update({ time: gap });
      }
      candles.update(candle);
      volume.update(v);
      state.last = time;
    } else if (time >= state.first) {
      candles.update(candle, true); // an earlier slot: its final candle after the next opened
      volume.update(v, true);
    } else {
      return;
    }
    window.tcpMarket.updates += 1;
    window.tcpMarket.bars = candles.data().filter((c) => c.open !== undefined).length;
    if (message.is_final) {
      const received = Date.now();
      requestAnimationFrame(() => requestAnimationFrame(() => {
        const finals = window.tcpMarket.finals;
        finals.push({ timeframe: message.timeframe, timestamp: message.timestamp, received, drawn: Date.now() });
        if (finals.length > 1000) finals.shift();
      }));
    }
  }

  // The legend: the candle under the crosshair (or the newest), its times in UTC and local.
  const legend = document.getElementById("legend");
  chart.subscribeCrosshairMove((param) => {
    const found = param.time ? param.seriesData.get(candles) : null;
    if (!found || found.open === undefined) {
      legend.textContent = "";
      return;
    }
    const v = param.seriesData.get(volume);
    const p = state.precision;
    legend.replaceChildren(
      TCP.time(found.time * 1000),
      ` O ${found.open.toFixed(p)} H ${found.high.toFixed(p)} L ${found.low.toFixed(p)} C ${found.close.toFixed(p)}` +
        (v && v.value !== undefined ? ` V ${v.value}` : ""),
    );
    legend.title = TCP.local(found.time * 1000);
  });

  // trades and the book -----------------------------------------------------------------
  const tape = document.querySelector("#tape tbody");

  function addTrades(trades) {
    for (const trade of trades) {
      const row = TCP.element("tr", { class: trade.side === "buy" ? "buy" : "sell" },
        TCP.element("td", {}, TCP.time(trade.ts, true)),
        TCP.element("td", { text: trade.side }),
        TCP.element("td", { class: "num", text: TCP.decimal(trade.price) }),
        TCP.element("td", { class: "num", text: TCP.decimal(trade.size) }));
      tape.prepend(row);
    }
    while (tape.rows.length > TAPE_LENGTH) tape.deleteRow(-1);
  }

  function showBook(book) {
    const body = document.querySelector("#book tbody");
    const meta = document.getElementById("book-meta");
    if (!book) {
      meta.textContent = "No order book stored for this market (is \"orderbook\" among its data types?).";
      return;
    }
    const rows = Math.max(book.bids.length, book.asks.length);
    const lines = [];
    for (let i = 0; i < rows; i += 1) {
      const bid = book.bids[i] || ["", ""];
      const ask = book.asks[i] || ["", ""];
      lines.push(TCP.element("tr", {},
        TCP.element("td", { class: "num", text: TCP.decimal(bid[1]) }),
        TCP.element("td", { class: "num buy", text: TCP.decimal(bid[0]) }),
        TCP.element("td", { class: "num sell", text: TCP.decimal(ask[0]) }),
        TCP.element("td", { class: "num", text: TCP.decimal(ask[1]) })));
    }
    body.replaceChildren(...lines);
    const bestBid = book.bids.length ? Number(book.bids[0][0]) : null;
    const bestAsk = book.asks.length ? Number(book.asks[0][0]) : null;
    const parts = [];
    if (bestBid !== null && bestAsk !== null) {
      const spread = bestAsk - bestBid;
      const places = Math.max(decimals(book.bids[0][0]), decimals(book.asks[0][0]));
      parts.push(`spread ${spread.toFixed(places)} (${((spread / bestAsk) * 100).toFixed(4)}%)`);
    }
    meta.replaceChildren(parts.join(" "), " · as of ", TCP.time(book.ts, true));
  }

  function showTicker(ticker) {
    const line = document.getElementById("ticker");
    if (!ticker) return;
    const part = (label, value) => (value === null || value === undefined ? "" : `${label} ${TCP.decimal(value)} `);
    line.replaceChildren(
      "Exchange ticker: ",
      part("last", ticker.last) + part("bid", ticker.bid) + part("ask", ticker.ask) +
        part("24 h high", ticker.high_24h) + part("24 h low", ticker.low_24h) + part("24 h volume", ticker.volume_24h),
      "· ", TCP.time(ticker.ts, true),
    );
  }

  // the live stream and the timeframe switch ----------------------------------------------
  function listen() {
    if (state.source) state.source.close();
    const params = new URLSearchParams({ timeframe: state.timeframe });
    state.source = TCP.connect(`${script.dataset.stream}?${params}`, {
      candle: applyCandle,
      trades: (message) => addTrades(message.trades),
      book: showBook,
      ticker: showTicker,
    }, reload);
  }

  async function reload() {
    await load(state.timeframe);
  }

  async function switchTo(timeframe) {
    state.timeframe = timeframe;
    window.tcpMarket = { timeframe, bars: 0, finals: [], loaded: false, updates: 0 };
    chart.applyOptions({ timeScale: { secondsVisible: SECONDS[timeframe] < 3600 } });
    for (const link of document.querySelectorAll("#timeframes a")) {
      if (link.dataset.timeframe === timeframe) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    }
    history.replaceState(null, "", `?timeframe=${timeframe}`);
    candles.setData([]);
    volume.setData([]);
    state.first = state.last = null;
    listen(); // first, so that nothing published while the history loads is missed
    await load(timeframe);
  }

  document.getElementById("timeframes").addEventListener("click", (event) => {
    const link = event.target.closest("a[data-timeframe]");
    if (!link) return;
    event.preventDefault();
    switchTo(link.dataset.timeframe);
  });

  addTrades([...initial.trades].reverse());
  showBook(initial.book);
  showTicker(initial.ticker);
  switchTo(state.timeframe);
})();
