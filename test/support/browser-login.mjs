// Logs in through a real headless Chromium (Debian's, driven by playwright-core), as a person would.
//
//   node test/support/browser-login.mjs --url URL --login alice [--cancel]
//
// Opens URL and goes through oidc-provider's pages as they come: the device code confirmation,
// sign-in (any password), consent; then the redirect to arcproxy's loopback callback. Prints the
// last page's text. --cancel clicks "[ Cancel ]" on the sign-in page instead. Requests to anything
// but loopback are refused, so no page waits on the internet. Exits 1 with the reason.
import { chromium } from "playwright-core";
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { url: { type: "string" }, login: { type: "string" }, cancel: { type: "boolean" } } });
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"], timeout: 30_000 });
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20_000);
  await page.route("**/*", (route) => {
    const host = new URL(route.request().url()).hostname;
    return host === "127.0.0.1" || host === "localhost" ? route.continue() : route.abort();
  });
  await page.goto(values.url, { waitUntil: "domcontentloaded" });
  // At most a handful of pages: device confirmation, sign-in, consent, (device) success or callback.
  for (let step = 0; step < 6; step++) {
    await page.waitForLoadState("domcontentloaded");
    const url = new URL(page.url());
    if (url.pathname === "/callback") break;
    if (await page.locator('input[name="login"]').count()) {
      if (values.cancel) {
        await Promise.all([page.waitForNavigation(), page.click('a:has-text("Cancel")')]);
        continue;
      }
      await page.fill('input[name="login"]', values.login);
      await page.fill('input[name="password"]', "any-password");
      await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
      continue;
    }
    const next = page.locator('button[type="submit"]:has-text("Continue")');
    if (await next.count()) {
      await Promise.all([page.waitForNavigation(), next.first().click()]);
      continue;
    }
    break; // a page with nothing to press: the end (success, or an error to print)
  }
  process.stdout.write((await page.innerText("body")).trim() + "\n");
} catch (error) {
  process.stderr.write(`browser login failed: ${error.message}\n`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
