/*
 * Click tracker: <script src="https://CLUSTERS/tracker.js" data-page="PAGE_ID" async></script>
 * Records each click as document-relative coordinates in [0, 1] and posts them in batches to the service that
 * served this script (POST /clicks): every few seconds, when the batch is full, and when the page is hidden or
 * left (sendBeacon; fetch with keepalive where beacons are unavailable). Never throws into the host page.
 * Options (data- attributes): page (default: location.pathname), endpoint (default: this script's origin),
 * interval (ms, default 5000), respect-dnt ("true": record nothing under Do-Not-Track or Global Privacy Control).
 */
;(() => {
  try {
    const script = document.currentScript
    const data = script?.dataset ?? {}
    const nav = navigator
    if (data.respectDnt === "true" && (nav.doNotTrack === "1" || nav.globalPrivacyControl === true)) return
    const page = data.page || location.pathname
    const url = `${(data.endpoint || new URL(script.src).origin).replace(/\/+$/, "")}/clicks`
    const every = Number(data.interval) || 5000
    // A beacon (and a keepalive fetch) may carry at most 64 KB in flight: 200 clicks are about 25 KB.
    const max = 200
    const queue = []
    const id = () => (crypto.randomUUID ? crypto.randomUUID() : undefined)
    const flush = () => {
      try {
        if (queue.length === 0) return
        const body = JSON.stringify(queue.splice(0, max))
        // text/plain: a "simple" request, so no CORS preflight is needed and beacons may carry it.
        const blob = new Blob([body], { type: "text/plain" })
        if (!nav.sendBeacon?.(url, blob))
          fetch(url, {
            method: "POST",
            body,
            keepalive: true,
            headers: { "content-type": "text/plain" },
          }).catch(() => {})
        if (queue.length > 0) flush()
      } catch (_) {}
    }
    const clamp = (v) => Math.min(Math.max(v, 0), 1) || 0
    addEventListener(
      "click",
      (event) => {
        try {
          const root = document.documentElement
          const width = Math.max(root.scrollWidth, 1)
          const height = Math.max(root.scrollHeight, 1)
          queue.push({
            page_uuid: page,
            coordinates: { x: clamp(event.pageX / width), y: clamp(event.pageY / height) },
            request_id: id(),
          })
          if (queue.length >= max) flush()
        } catch (_) {}
      },
      { capture: true, passive: true },
    )
    setInterval(flush, every)
    addEventListener("visibilitychange", () => document.visibilityState === "hidden" && flush())
    addEventListener("pagehide", flush)
  } catch (_) {}
})()
