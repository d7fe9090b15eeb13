// The browser side of a webshell terminal: xterm.js bridged to the server's WebSocket.
// Keystrokes and resizes go up as JSON; terminal output comes down as binary frames.
(function () {
  "use strict";
  const box = document.getElementById("terminal");
  const status = document.getElementById("status");
  const term = new Terminal({cursorBlink: true, convertEol: false, fontSize: 14,
                             fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
                             theme: {background: "#111418", foreground: "#e6e6e6"}});
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(box);
  fit.fit();
  const query = new URLSearchParams({cluster: box.dataset.cluster, namespace: box.dataset.namespace,
                                     cols: String(term.cols), rows: String(term.rows)});
  const ws = new WebSocket(`wss://${location.host}/ws/terminal?${query}`);
  ws.binaryType = "arraybuffer";
  const send = (message) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); };
  ws.onopen = () => {
    status.textContent = `Connected to ${box.dataset.cluster}. Every command is audited and this session is recorded.`;
    term.focus();
  };
  ws.onmessage = (event) => term.write(new Uint8Array(event.data));
  ws.onclose = (event) => {
    status.textContent = `Session ended${event.reason ? ": " + event.reason : ""}.`;
    box.classList.add("ended");
    term.options.disableStdin = true;
  };
  term.onData((data) => send({type: "input", data: data}));
  term.onResize(({cols, rows}) => send({type: "resize", cols: cols, rows: rows}));
  window.addEventListener("resize", () => fit.fit());
})();
