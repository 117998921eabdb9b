/**
 * ARL step 3 (recaps) and the LLM chat client, against a real HTTP server on 127.0.0.1 that speaks
 * /v1/chat/completions and injects 500s, 429s with Retry-After, hanging replies, garbage, empty and
 * over-long replies and 401s; a run killed mid-way (SIGKILL); and the extractive recapper.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { findKeyTokens, keyTokenOptions } from '../src/arl/key-tokens.ts';
import { capRecap, groupRecapItems, loadRecapPrompt, maxWordsFor, type RecapItem, type RecapRecord, renderRecapPrompt, writeRecaps } from '../src/arl/recap.ts';
import { chooseSentences, openRecapper, segmentSentences, sentenceGains } from '../src/arl/recappers.ts';
import { findRelevantSegments, type SegmentRecord } from '../src/arl/relevant-segment.ts';
import { readJsonLines } from '../src/io/jsonl.ts';
import type { KeyTokenDocument } from '../src/arl/key-tokens.ts';
import { ChatError, chatCompletionsUrl, openChatModel, parseRetryAfter } from '../src/io/chat.ts';
import { loadModel } from '../src/io/checkpoint.ts';
import { recapProgressText } from '../src/cli/arl.ts';
import { UserError } from '../src/io/errors.ts';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.ts';
import { assertUserError, makeTinyArlInputs, REPO_ROOT, runArl, tf, useCpu } from './helpers.ts';

const API_KEY = 'sk-test-7f3a9c1e5b2d';
const KEY_ENV = 'ARL_RECAP_TEST_KEY';
process.env[KEY_ENV] = API_KEY;

// ---------------------------------------------------------------------------------------------
// A chat-completions server whose replies a test scripts per request.

interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** Raw body; default: a valid reply with `content`. */
  body?: string;
  content?: string;
  delayMs?: number;
  /** Never answer. */
  hang?: boolean;
}

interface ChatRequest {
  prompt: string;
  /** Requests seen so far with this prompt, this one included. */
  attempt: number;
  authorization: string | undefined;
}

/** The default answer: names the prompt, so a recap can be traced to the request that made it. */
function recapFor(prompt: string): string {
  return `Recap ${promptId(prompt)}.`;
}

function promptId(prompt: string): string {
  return createHash('sha256').update(prompt).digest('hex').slice(0, 10);
}

class ChatServer {
  url = '';
  /** Requests per prompt id, and usable replies (valid, non-empty content) per prompt id. */
  readonly requests = new Map<string, number>();
  readonly answered = new Map<string, number>();
  readonly authorizations = new Set<string | undefined>();
  inFlight = 0;
  maxInFlight = 0;
  private readonly server = createServer((req, res) => void this.handle(req, res));
  private readonly sockets = new Set<Socket>();

  constructor(public script: (request: ChatRequest) => Reply = () => ({})) {
    this.server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  get totalRequests(): number {
    return [...this.requests.values()].reduce((a, b) => a + b, 0);
  }

  reset(script: (request: ChatRequest) => Reply): void {
    this.script = script;
    this.requests.clear();
    this.answered.clear();
    this.authorizations.clear();
    this.maxInFlight = 0;
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    res.on('close', () => this.inFlight--);
    let body = '';
    for await (const chunk of req) body += chunk;
    assert.equal(req.url, '/v1/chat/completions');
    const prompt = (JSON.parse(body) as { messages: { content: string }[] }).messages.at(-1)!.content;
    const id = promptId(prompt);
    const attempt = (this.requests.get(id) ?? 0) + 1;
    this.requests.set(id, attempt);
    this.authorizations.add(req.headers.authorization);
    const reply = this.script({ prompt, attempt, authorization: req.headers.authorization });
    if (reply.hang) return;
    if (reply.delayMs) await new Promise((resolve) => setTimeout(resolve, reply.delayMs));
    const status = reply.status ?? 200;
    res.writeHead(status, { 'content-type': 'application/json', ...reply.headers });
    res.end(reply.body ?? JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: reply.content ?? recapFor(prompt) } }] }));
    const usable = status === 200 && reply.body === undefined && (reply.content ?? 'x').trim() !== '';
    if (usable) this.answered.set(id, (this.answered.get(id) ?? 0) + 1);
  }
}

// A long timeout: on a busy machine a short one would abandon good replies and make tests flaky.
const fastRetries = { backoffBaseMs: 5, timeoutMs: 30_000, apiKeyEnv: KEY_ENV };

// ---------------------------------------------------------------------------------------------

describe('chat client (OpenAI-compatible server)', () => {
  let server: ChatServer;
  before(async () => {
    server = await new ChatServer().start();
  });
  after(() => server.close());

  test('500, 429 with Retry-After (seconds and date), a hanging reply, garbage and empty replies are retried until a good reply', async () => {
    const faults: Record<string, Reply> = {
      a: { status: 500, body: 'internal error' },
      b: { status: 429, headers: { 'retry-after': '1' }, body: '{"error":{"message":"slow down"}}' },
      c: { status: 503, headers: { 'retry-after': new Date(Date.now() + 2000).toUTCString() } },
      d: { hang: true },
      e: { body: '<html>gateway</html>' },
      f: { content: '  ' },
      g: { body: '{"choices":[]}' },
    };
    server.reset(({ prompt, attempt }) => (attempt === 1 ? faults[prompt] : { content: `answer ${prompt}` }));
    const retries: { prompt: string; delayMs: number; kind: string }[] = [];
    const prompts = Object.keys(faults);
    const results = await Promise.all(
      prompts.map(async (prompt) => {
        // Only the hanging call needs a short timeout; the others get a long one, so a busy machine cannot time them out.
        const timeoutMs = prompt === 'd' ? 1000 : 30_000;
        const chat = await openChatModel({ backend: 'openai', url: server.url, model: 'm', ...fastRetries, timeoutMs, onRetry: (r) => retries.push({ prompt, delayMs: r.delayMs, kind: r.error.kind }) });
        return chat.complete([{ role: 'user', content: prompt }], { maxTokens: 10 });
      }),
    );
    assert.deepEqual(results, prompts.map((p) => `answer ${p}`));
    for (const prompt of prompts.filter((p) => p !== 'd')) assert.equal(server.requests.get(promptId(prompt)), 2, prompt);
    assert.ok(server.requests.get(promptId('d'))! >= 2);
    const retryOf = (prompt: string) => retries.find((r) => r.prompt === prompt)!;
    assert.equal(retryOf('b').delayMs, 1000);
    assert.ok(retryOf('c').delayMs > 0 && retryOf('c').delayMs <= 2000, String(retryOf('c').delayMs));
    assert.deepEqual(prompts.map((p) => retryOf(p).kind), ['http', 'http', 'http', 'timeout', 'reply', 'reply', 'reply']);
    assert.equal(retries.filter((r) => r.prompt !== 'd').length, prompts.length - 1);
  });

  test('401 is not retried; the message is clear and never holds the API key', async () => {
    server.reset(({ authorization }) => ({ status: 401, body: JSON.stringify({ error: { message: `Incorrect API key provided: ${authorization?.slice(7)}` } }) }));
    const chat = await openChatModel({ backend: 'openai', url: `${server.url}/v1/`, model: 'm', ...fastRetries });
    const err = await chat.complete([{ role: 'user', content: 'x' }], { maxTokens: 5 }).then(
      () => assert.fail('expected a ChatError'),
      (e: unknown) => e as ChatError,
    );
    assert.ok(err instanceof ChatError);
    assert.equal(err.fatal, true);
    assert.match(err.message, /HTTP 401 Incorrect API key provided: \[api key\]; check the API key/);
    assert.ok(!err.message.includes(API_KEY) && !String(err.stack).includes(API_KEY));
    assert.equal(server.totalRequests, 1);
    assert.deepEqual([...server.authorizations].at(-1), `Bearer ${API_KEY}`);
  });

  test('gives up after the retries; an unreachable server is a fatal error', async () => {
    server.reset(() => ({ status: 502 }));
    const chat = await openChatModel({ backend: 'openai', url: server.url, model: 'm', ...fastRetries, retries: 2 });
    await assert.rejects(chat.complete([{ role: 'user', content: 'x' }], { maxTokens: 5 }), (e: ChatError) => e.kind === 'http' && !e.fatal && /HTTP 502.*\(after 3 attempts\)/.test(e.message));
    assert.equal(server.totalRequests, 3);

    const closed = await new ChatServer().start();
    await closed.close();
    const down = await openChatModel({ backend: 'openai', url: closed.url, model: 'm', ...fastRetries, retries: 1 });
    await assert.rejects(down.complete([{ role: 'user', content: 'x' }], { maxTokens: 5 }), (e: ChatError) => e.kind === 'network' && e.fatal && /cannot connect \(ECONNREFUSED\)/.test(e.message));
  });

  test('requests in flight never exceed --llm-concurrency', async () => {
    server.reset(() => ({ delayMs: 20 }));
    const chat = await openChatModel({ backend: 'openai', url: server.url, model: 'm', ...fastRetries, concurrency: 3 });
    const prompts = Array.from({ length: 12 }, (_, i) => `p${i}`);
    const replies = await Promise.all(prompts.map((p) => chat.complete([{ role: 'user', content: p }], { maxTokens: 5 })));
    assert.deepEqual(replies, prompts.map(recapFor));
    assert.ok(server.maxInFlight <= 3, `max in flight ${server.maxInFlight}`);
    assert.equal(server.totalRequests, 12);
  });

  test('URLs with or without /v1; Retry-After as seconds or a date; flags checked', async () => {
    assert.equal(chatCompletionsUrl('http://h:8080'), 'http://h:8080/v1/chat/completions');
    assert.equal(chatCompletionsUrl('https://api.openai.com/v1/'), 'https://api.openai.com/v1/chat/completions');
    assert.equal(chatCompletionsUrl('http://h/proxy/v1'), 'http://h/proxy/v1/chat/completions');
    assert.equal(parseRetryAfter('2.5'), 2500);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4000), 6000);
    assert.equal(parseRetryAfter('soon'), null);
    assert.throws(() => chatCompletionsUrl('http://user:secret@h'), UserError);
    await assert.rejects(openChatModel({ backend: 'openai', url: server.url, model: 'm', apiKeyEnv: 'ARL_TEST_UNSET_VARIABLE' }), /ARL_TEST_UNSET_VARIABLE: the environment variable is not set/);
    await assert.rejects(openChatModel({ backend: 'openai', url: server.url }), /--llm-model is required/);
    await assert.rejects(openChatModel({ backend: 'llama-cpp', gguf: join(tmpdir(), 'no-such.gguf') }), /no-such\.gguf: no such file/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('arl recaps', () => {
  const work = mkdtempSync(join(tmpdir(), 'arl-recap-'));
  const inputs = join(work, 'inputs');
  let checkpoint: string;
  let tokenizer: Tokenizer;
  let server: ChatServer;
  let items: number;
  let outCount = 0;
  /** A fresh output folder and cache for each run that must not see earlier ones. */
  const freshOut = () => {
    const dir = join(work, `out-${++outCount}`);
    return { outDir: dir, cacheFile: join(dir, 'cache.jsonl') };
  };
  const recapsIn = (dir: string) => readJsonLines<RecapRecord>(join(dir, 'recaps.jsonl'));
  const arl = (...args: string[]) => runArl('recaps', '--keytokens', inputs, '--backend', 'cpu', ...args);

  before(async () => {
    await useCpu();
    ({ checkpoint } = await makeTinyArlInputs(work));
    const { model } = loadModel(checkpoint);
    tokenizer = await Tokenizer.load(BUNDLED_TOKENIZER_PATH);
    try {
      await findKeyTokens({ model, tokenizer, checkpoint, corpus: join(work, 'corpus.jsonl'), outDir: inputs, options: keyTokenOptions(model.config.maxSeq) });
      // Keep every key token's best segment, so there are enough items; segments long enough to hold several sentences.
      await findRelevantSegments({ model, tokenizer, checkpoint, keyTokensDir: inputs, options: { margin: -1e9, segmentTokens: 40 } });
    } finally {
      model.dispose();
    }
    const segments = readJsonLines<SegmentRecord>(join(inputs, 'segments.jsonl'));
    items = new Set(segments.filter((s) => s.segment_text.trim() !== '').map((s) => `${s.doc}:${s.segment_start}:${s.segment_end}`)).size;
    assert.ok(items >= 6, `${items} items`);
    server = await new ChatServer().start();
  });
  after(() => server?.close());

  async function openaiRecaps(o: { outDir: string; cacheFile: string }, extra: { retries?: number; concurrency?: number; maxRecapTokens?: number } = {}) {
    const recapper = await openRecapper({
      name: 'openai',
      tokenizer,
      maxRecapTokens: extra.maxRecapTokens ?? 24,
      chat: { url: server.url, model: 'fake-llm', ...fastRetries, retries: extra.retries ?? 3, concurrency: extra.concurrency ?? 3 },
    });
    try {
      return await writeRecaps({ recapper, tokenizer, keyTokensDir: inputs, maxRecapTokens: extra.maxRecapTokens ?? 24, ...o });
    } finally {
      await recapper.dispose();
    }
  }

  test('faults on every other call: every segment gets one recap, no completed call is repeated, reruns make no calls', async () => {
    const longReply = Array.from({ length: 20 }, (_, i) => `Sentence number ${i} of a reply that runs on.`).join(' ');
    const faults: Reply[] = [{ status: 500 }, { status: 429, headers: { 'retry-after': '0' } }, { body: 'not json' }, { content: '' }, { content: `<recap>${longReply}</recap>` }, {}];
    const firstSeen = new Map<string, number>();
    server.reset(({ prompt, attempt }) => {
      if (attempt > 1) return { delayMs: 5 };
      firstSeen.set(prompt, firstSeen.size);
      return faults[firstSeen.get(prompt)! % faults.length];
    });
    const out = freshOut();
    const totals = await openaiRecaps(out, { maxRecapTokens: 24 });
    assert.equal(totals.items, items);
    assert.equal(totals.recaps, items);
    assert.equal(totals.made, items);
    assert.deepEqual(totals.failed, []);
    assert.ok(server.maxInFlight <= 3);
    const records = recapsIn(out.outDir);
    assert.equal(records.length, items);
    assert.equal(new Set(records.map((r) => `${r.doc}:${r.segment_start}:${r.segment_end}`)).size, items);
    for (const count of server.answered.values()) assert.equal(count, 1);
    assert.equal(server.answered.size, items);
    for (const r of records) {
      assert.equal(r.recapper, 'openai');
      assert.equal(r.model, 'fake-llm');
      assert.ok(r.positions.length >= 1);
      assert.ok(tokenizer.encode(r.recap).length <= 24, r.recap);
      assert.doesNotMatch(r.recap, /<\/?recap>/);
    }
    assert.ok(records.some((r) => r.recap.startsWith('Sentence number 0')), 'the over-long reply was kept, capped');
    for (const file of readdirSync(out.outDir)) assert.ok(!readFileSync(join(out.outDir, file), 'utf8').includes(API_KEY), file);

    const before = server.totalRequests;
    const rerun = await openaiRecaps(out);
    assert.equal(server.totalRequests, before, 'a rerun into the same folder makes no calls');
    assert.deepEqual([rerun.resumed, rerun.made, rerun.recaps], [items, 0, items]);
    const elsewhere = await openaiRecaps({ outDir: join(work, 'elsewhere'), cacheFile: out.cacheFile });
    assert.equal(server.totalRequests, before, 'another output folder with the same cache makes no calls');
    assert.deepEqual([elsewhere.cached, elsewhere.made], [items, 0]);
    assert.deepEqual(recapsIn(join(work, 'elsewhere')).map((r) => r.recap).sort(), records.map((r) => r.recap).sort());
  });

  test('items still failing after the retries are listed; a rerun retries only them', async () => {
    const out = freshOut();
    let broken: string | null = null;
    server.reset(({ prompt }) => {
      broken ??= promptId(prompt);
      return promptId(prompt) === broken ? { status: 500 } : {};
    });
    const totals = await openaiRecaps(out, { retries: 1 });
    assert.equal(totals.failed.length, 1);
    assert.equal(totals.recaps, items - 1);
    assert.equal(server.requests.get(broken!), 2);
    const failed = readJsonLines<{ doc: string; error: string }>(join(out.outDir, 'recaps-failed.jsonl'));
    assert.equal(failed.length, 1);
    assert.match(failed[0].error, /HTTP 500 .*after 2 attempts/);

    server.reset(() => ({}));
    const rerun = await openaiRecaps(out);
    assert.deepEqual([rerun.made, rerun.recaps, rerun.failed.length], [1, items, 0]);
    assert.deepEqual([...server.requests.keys()], [broken]);
    assert.ok(!existsSync(join(out.outDir, 'recaps-failed.jsonl')));
  });

  test('CLI: the key never reaches stdout, stderr or files; a 401 is one line and exit code 2', async () => {
    server.reset(() => ({}));
    const out = freshOut();
    const llm = ['--recapper', 'openai', '--llm-url', server.url, '--llm-model', 'fake-llm', '--llm-api-key-env', KEY_ENV, '--out', out.outDir, '--cache', out.cacheFile];
    const r = await arl(...llm);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`${items} of ${items} segments \\(\\d+ key tokens\\) have recaps: ${items} made now`));
    assert.match(r.stdout, /recapper openai: written by the LLM server \(model fake-llm\)/);
    assert.ok(!r.stdout.includes(API_KEY) && !r.stderr.includes(API_KEY));
    assert.deepEqual([...server.authorizations], [`Bearer ${API_KEY}`]);

    server.reset(({ authorization }) => ({ status: 401, body: `{"error":{"message":"bad key ${authorization}"}}` }));
    const denied = await arl(...llm.slice(0, -4), '--out', join(work, 'denied'), '--cache', join(work, 'denied', 'cache.jsonl'));
    assertUserError(denied, /HTTP 401 bad key Bearer \[api key\]; check the API key .*rerun to continue/);
    assert.ok(!denied.stderr.includes(API_KEY) && !denied.stdout.includes(API_KEY));
    assert.ok(server.totalRequests <= 4, 'a 401 stops the run: no call after the first ones in flight (--llm-concurrency 4)');

    const badPrompt = join(work, 'bad-prompt.txt');
    writeFileSync(badPrompt, 'Recap {{segment}} for {{reader}}.');
    assertUserError(await arl(...llm, '--prompt', badPrompt), /bad-prompt\.txt: unknown placeholder \{\{reader\}\}/);
    writeFileSync(badPrompt, 'Recap {{ segment }}.');
    assertUserError(await arl(...llm, '--prompt', badPrompt), /bad-prompt\.txt: no \{\{following\}\} placeholder/);
    assertUserError(await arl('--recapper', 'extractive'), /--recapper extractive needs --checkpoint/);
  });

  test('a run killed mid-way (SIGKILL) resumes: every segment done exactly once, no completed call repeated', async () => {
    server.reset(() => ({ delayMs: 150 }));
    const out = freshOut();
    const args = ['bin/arl.js', 'recaps', '--keytokens', inputs, '--recapper', 'openai', '--llm-url', server.url, '--llm-model', 'fake-llm', '--llm-concurrency', '2', '--out', out.outDir, '--cache', out.cacheFile];
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const recapsFile = join(out.outDir, 'recaps.jsonl');
    const lines = () => (existsSync(recapsFile) ? readFileSync(recapsFile, 'utf8').split('\n').filter(Boolean).length : 0);
    while (lines() < 3 && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGKILL');
    await exited;
    const doneBefore = recapsIn(out.outDir);
    assert.ok(doneBefore.length >= 3 && doneBefore.length < items, `${doneBefore.length} of ${items} done before the kill`);
    const requestsBefore = new Map(server.requests);

    const r = await arl('--recapper', 'openai', '--llm-url', server.url, '--llm-model', 'fake-llm', '--out', out.outDir, '--cache', out.cacheFile);
    assert.equal(r.code, 0, r.stderr);
    const records = recapsIn(out.outDir);
    assert.equal(records.length, items);
    assert.equal(new Set(records.map((x) => `${x.doc}:${x.segment_start}:${x.segment_end}`)).size, items);
    for (const done of doneBefore) {
      const id = done.recap.slice('Recap '.length, -1);
      assert.equal(server.requests.get(id), requestsBefore.get(id), `the call behind a finished recap was made again (${id})`);
    }
    for (const count of server.requests.values()) assert.ok(count <= 2);
  });

  test('extractive: sentences of the segment chosen by our model, capped; tensors do not leak', async () => {
    const r = await arl('--recapper', 'extractive', '--checkpoint', checkpoint, '--max-recap-tokens', '12', '--out', join(work, 'extractive'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /recapper extractive: sentences copied from each segment, chosen by our model, no LLM/);
    const records = recapsIn(join(work, 'extractive'));
    assert.equal(records.length, items);
    for (const record of records) {
      assert.equal(record.recapper, 'extractive');
      assert.ok(record.recap.length > 0 && tokenizer.encode(record.recap).length <= 12, record.recap);
      // Copied text: the recap's words (but a last one cut by the cap) appear in the segment, in order.
      const segmentText = record.segment_text.replace(/\s+/g, ' ');
      let at = 0;
      for (const word of record.recap.split(' ').slice(0, -1)) {
        at = segmentText.indexOf(word, at);
        assert.ok(at >= 0, `${record.recap} | ${record.segment_text}`);
        at += word.length;
      }
    }

    const { model } = loadModel(checkpoint);
    try {
      const segments = readJsonLines<SegmentRecord>(join(inputs, 'segments.jsonl'));
      const documents = new Map(readJsonLines<KeyTokenDocument>(join(inputs, 'documents.jsonl')).map((d) => [d.doc, d]));
      const all = groupRecapItems(segments, documents, 16, tokenizer, 'segments.jsonl');
      const multi = all.filter((item) => segmentSentences(item).length > 1);
      assert.ok(multi.length > 0, 'some segment holds several sentences');
      const tensors = tf.memory().numTensors;
      for (const item of multi) {
        const sentences = segmentSentences(item);
        const gains = await sentenceGains(model, item, sentences);
        const best = sentences[gains.indexOf(Math.max(...gains))];
        const chosen = chooseSentences(sentences, gains, 1000);
        assert.ok(chosen.includes(best));
        assert.ok(chosen.every((s, k) => k === 0 || s.start > chosen[k - 1].start));
        assert.deepEqual(chooseSentences(sentences, gains, 1), [best], 'a cap below every sentence keeps the best one (capRecap trims it)');
      }
      assert.equal(tf.memory().numTensors, tensors);
    } finally {
      model.dispose();
    }
  });

  test('prompt and cap helpers', () => {
    const promptFile = join(work, 'prompt.txt');
    writeFileSync(promptFile, 'Before: {{segment}}\nAfter: {{ following }}\n{{max_words}} words.');
    const item = { segmentText: 'The jury met.', followingText: 'It voted.' } as RecapItem;
    assert.equal(renderRecapPrompt(loadRecapPrompt(promptFile), item, 32), `Before: The jury met.\nAfter: It voted.\n${maxWordsFor(32)} words.`);
    assert.throws(() => loadRecapPrompt(join(work, 'missing.txt')), /missing\.txt: cannot read the recap prompt \(ENOENT\)/);
    assert.equal(capRecap('  Recap:  "The mayor\n spoke."  ', tokenizer, 48), 'The mayor spoke.');
    assert.throws(() => capRecap(' <recap> </recap> ', tokenizer, 48), /empty/);
    const long = 'The jury met on Monday in the old city hall. The mayor spoke about the budget and the schools for a very long time indeed.';
    const sentenceEnd = tokenizer.encode('The jury met on Monday in the old city hall.').length;
    assert.equal(capRecap(long, tokenizer, sentenceEnd + 3), 'The jury met on Monday in the old city hall.', 'cut at the sentence end');
    const cut = capRecap(long, tokenizer, 4);
    assert.ok(long.startsWith(cut) && tokenizer.encode(cut).length <= 4, cut);
  });

  test('progress reports recaps per second for the extractive recapper, which makes no LLM calls', () => {
    const progress = { done: 3, total: 5, made: 3, cached: 0, failed: 0 };
    const started = performance.now() - 1000;
    assert.match(recapProgressText({ name: 'extractive' }, progress, started), /^\d+(\.\d)? recaps\/s \(no LLM calls\) 0 cached 0 failed$/);
    assert.match(recapProgressText({ name: 'openai' }, progress, started), /^\d+(\.\d)? calls\/s 0 cached 0 failed$/);
  });

  test('a recap cut by the cap ends at a word boundary, never inside a word', () => {
    const text = 'We must get rid of Castro and his friends in Havana before the election, said the senator.';
    const ids = tokenizer.encode(text);
    const insideWord = ids.findIndex((id, k) => k > 0 && /^[a-z]/.test(tokenizer.pieceOf(id)));
    assert.ok(insideWord > 0, 'the text has a word of several tokens, so a hard cut would split it');
    assert.equal(capRecap(text, tokenizer, insideWord), tokenizer.decode(ids.slice(0, insideWord - 1)).trim());
    for (let k = 1; k < ids.length; k++) {
      const cut = capRecap(text, tokenizer, k);
      assert.ok(text.startsWith(cut) && tokenizer.encode(cut).length <= k, `${k}: ${cut}`);
      assert.match(text.slice(cut.length), /^[\s,.]/, `cap ${k} cut inside a word: "${cut}"`);
    }
  });
});
