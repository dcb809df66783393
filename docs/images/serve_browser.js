// The browser screenshot of `gradstep serve` (docs/images/serve-browser.png), with a real Chromium.
//
//   gradstep serve neuron --port 8123 &
//   (cd /tmp/shot && npm install puppeteer-core)     # a scratch folder; it drives apt's chromium
//   NODE_PATH=/tmp/shot/node_modules node docs/images/serve_browser.js http://127.0.0.1:8123 docs/images/serve-browser.png c
//
// The last argument is keys typed into the app once it has drawn ("c": run to the first divergence).
// textual-serve's page starts the app on load; `--virtual-time-budget` alone screenshots its splash,
// since the app's screen arrives over a websocket in real time.
const puppeteer = require('puppeteer-core');
const [url, out, keys = ''] = process.argv.slice(2);
(async () => {
  const browser = await puppeteer.launch({
    executablePath: '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--hide-scrollbars'],
  });
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 800 });
  await page.goto(url, { waitUntil: 'networkidle2' });
  await page.waitForFunction(() => document.body.classList.contains('-first-byte'), { timeout: 60000 });
  await new Promise(r => setTimeout(r, 5000));
  // Keys for the app (e.g. "c": run to the first divergence), typed into the terminal.
  await page.click('#terminal');
  for (const key of keys) {
    await page.keyboard.press(key);
    await new Promise(r => setTimeout(r, 1500));
  }
  await new Promise(r => setTimeout(r, 3000));
  await page.screenshot({ path: out });
  await browser.close();
})().catch(e => { console.error(e); process.exit(1); });
