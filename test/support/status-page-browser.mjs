// Drives the relay's status page in real headless Chromium (Debian's, via playwright-core), step by step.
//
//   node test/support/status-page-browser.mjs --url RELAY --token-file F --cluster NAME --screenshot PNG [--refused]
//
// Signs in with the token (typed into the form, as a person pastes it). With --refused, prints the
// page's alert and stops. Otherwise prints "connected" once the cluster's row says so (and saves
// the screenshot), then "offline" once it turns offline, then "back" once it is connected again,
// without reloading: the page's own script refreshes it. Each wait is bounded (30 s).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values } = parseArgs({ options: { url: { type: "string" }, "token-file": { type: "string" }, cluster: { type: "string" }, screenshot: { type: "string" }, refused: { type: "boolean" } } });
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium", args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"], timeout: 30_000 });
const say = (line) => process.stdout.write(line + "\n");
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  const violations = [];
  page.on("console", (message) => { if (/Content Security Policy/i.test(message.text())) violations.push(message.text()); });
  await page.goto(values.url, { waitUntil: "domcontentloaded" });
  await page.fill("#token", readFileSync(values["token-file"], "utf8").trim());
  await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  if (values.refused) {
    say(`refused: ${(await page.locator('[role="alert"]').innerText()).trim()}`);
  } else {
    const cell = (state) => `tr[data-cluster="${values.cluster}"] td.${state}`;
    await page.waitForSelector(cell("up"));
    say("connected");
    await page.screenshot({ path: values.screenshot, fullPage: true });
    await page.waitForSelector(cell("down"));
    say("offline");
    await page.waitForSelector(cell("up"));
    say("back");
    if (violations.length) say(`csp-violations: ${violations.join(" | ")}`);
  }
} catch (error) {
  process.stderr.write(`status page: ${error.message}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
