// Loads the dashboard in headless Chromium (Debian's, through playwright-core: no browser is
// downloaded), waits until it shows data, and prints what a person sees as one JSON line. The
// Rust test (tests/api/dashboard.rs) compares that with the API; this script only looks.
//
//   node dashboard.mjs --url http://127.0.0.1:PORT/dashboard --viewport 1280x900 \
//     --chromium /usr/bin/chromium --screenshot out.png [--token T]
//
// With --token, the page must first ask for a token (it gets 401 without one); the script types it
// into the form, as a person would. With --pick SITE (and --screenshot-picked out2.png), it then
// chooses SITE in the site picker, as an operator would, and reports what the page shows then as
// "picked".
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const [width, height] = args.viewport.split("x").map(Number);
const profile = mkdtempSync(join(tmpdir(), "dashboard-chromium-"));

const browser = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  viewport: { width, height },
  deviceScaleFactor: width < 600 ? 2 : 1,
  isMobile: width < 600,
  hasTouch: width < 600,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const report = { consoleErrors: [], requestUrls: [], askedForToken: false };
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.on("console", (message) => {
    if (message.type() === "error") report.consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => report.consoleErrors.push("page error: " + error.message));
  page.on("request", (request) => report.requestUrls.push(request.url()));
  await page.goto(args.url, { waitUntil: "load" });

  if (args.token) {
    const input = page.getByLabel("Access token", { exact: true });
    await input.waitFor({ state: "visible", timeout: 15000 });
    report.askedForToken = true;
    await input.fill(args.token);
    await page.getByRole("button", { name: "Use token" }).click();
  }
  // Shown once the range answer is rendered (or an error / empty state is).
  await page.waitForFunction(
    () => !document.getElementById("data").hidden || !document.getElementById("error").hidden ||
      !document.getElementById("empty").hidden,
    null,
    { timeout: 15000 },
  );
  // The ingest rate comes with the first answer (an operator's only); a page that failed never
  // shows one.
  await page.waitForFunction(
    () => document.getElementById("ingest-card").hidden ||
      document.getElementById("ingest-rate").textContent.includes("/s"),
    null,
    { timeout: 15000 },
  ).catch(() => {});
  Object.assign(report, await whatIsShown(page));
  await page.screenshot({ path: args.screenshot, fullPage: true });
  if (args.pick) {
    await page.locator("#site").selectOption(args.pick);
    await page.waitForFunction((site) => document.body.dataset.shown === site, args.pick, {
      timeout: 15000,
    });
    report.picked = await whatIsShown(page);
    await page.screenshot({ path: args["screenshot-picked"], fullPage: true });
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report) + "\n");

/// What a person sees on the page now.
async function whatIsShown(page) {
  const report = {};
  const text = (id) => page.locator("#" + id).innerText();
  const visible = (id) => page.locator("#" + id).isVisible();
  const rows = (id) =>
    page.locator("#" + id + " tbody tr").evaluateAll((trs) =>
      trs.map((tr) => [...tr.cells].map((cell) => cell.innerText.trim())),
    );
  report.error = (await visible("error")) ? await text("error") : "";
  report.empty = (await visible("empty")) ? await text("empty") : "";
  report.total = await text("total");
  report.botShare = await text("bot-share");
  report.botSplit = await text("bot-split");
  report.ingestShown = await visible("ingest-card");
  report.ingestRate = await text("ingest-rate");
  report.ingestTotal = await text("ingest-total");
  report.rejected = await text("rejected");
  report.topPaths = await rows("top-paths");
  report.topUserAgents = await rows("top-agents");
  report.topBots = await rows("top-bots");
  report.siteName = (await visible("site-name")) ? await text("site-name") : "";
  report.picker = await visible("site-picker");
  report.pickerOptions = await page.locator("#site option").allInnerTexts();
  report.perSite = (await visible("per-site")) ? await rows("per-site-table") : [];
  report.title = await page.title();
  report.bars = await page.locator("#chart svg g").count();
  report.status = await text("status");
  report.pageUrl = page.url();
  // Nothing sticks out sideways on a phone.
  report.horizontalOverflow = await page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth + 1,
  );
  return report;
}
