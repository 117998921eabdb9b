/**
 * Headless Chromium for tests (Debian's /usr/bin/chromium through playwright-core): pages are served
 * from a local http server so they load scripts and fetch files as they would from any web server.
 * Without chromium the tests skip, saying why, unless ARL_REQUIRE_CHROMIUM is set (.ci/run sets it
 * after installing chromium), where a missing browser is a failure.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize } from 'node:path';
import { chromium, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** `skip` option for tests that need chromium: false when it is there (or required), else the reason. */
export function chromiumSkip(): string | false {
  if (existsSync(CHROMIUM) || process.env.ARL_REQUIRE_CHROMIUM) return false;
  return `${CHROMIUM} not installed (apt-get install chromium; .ci/run does)`;
}

const TYPES: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.svg': 'image/svg+xml' };

/**
 * Serves `routes` on 127.0.0.1: a key ending in '/' maps a URL prefix to a directory (the longest
 * matching prefix wins), any other key
 * one URL to a file. Returns the base URL and the server (close it).
 */
async function serve(routes: Record<string, string>): Promise<{ base: string; server: Server }> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let file: string | undefined = routes[path];
    if (file === undefined) {
      const prefix = Object.keys(routes)
        .filter((k) => k.endsWith('/') && path.startsWith(k))
        .sort((a, b) => b.length - a.length)[0];
      if (prefix) file = join(routes[prefix], normalize(path.slice(prefix.length)).replace(/^(\.\.[/\\])+/, ''));
    }
    if (!file || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Opens `url` (relative to the served routes) in headless Chromium and runs `fn` on the page; page errors fail the call. */
export async function withPage<T>(routes: Record<string, string>, url: string, fn: (page: Page) => Promise<T>): Promise<T> {
  const { base, server } = await serve(routes);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    page.on('requestfailed', (req) => errors.push(`request failed: ${req.url()}`));
    page.on('response', (r) => {
      if (r.status() >= 400) errors.push(`${r.status()} ${r.url()}`);
    });
    await page.goto(`${base}${url}`);
    const result = await fn(page);
    if (errors.length > 0) throw new Error(`page errors: ${errors.join('; ')}`);
    return result;
  } finally {
    await browser.close();
    server.close();
  }
}
