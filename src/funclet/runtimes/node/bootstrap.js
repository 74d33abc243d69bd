// The Node.js runtime: one instance of a function, speaking funclet's frame protocol.
//
// Started inside the instance's sandbox with the instance socket on fd 3 and its spec
// (JSON) readable on fd 4 (see docs/runtimes.md). Loads the handler `file.export`
// (CommonJS or ES module), runs the initializer once, says `ready`, then answers
// `invoke` and `pre_stop` frames until the socket closes. Handlers may be FC's
// callback style `(event, context, callback)` or async `(event, context)`.
'use strict';

const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { AsyncLocalStorage } = require('async_hooks');
const { EventEmitter } = require('events');
const { pathToFileURL } = require('url');
const { Writable } = require('stream');
const util = require('util');

const LOG_LIMIT = 1024 * 1024;
const MAX_BODY_CHUNK = 1024 * 1024; // a streamed body frame's most (protocol.MAX_BODY_CHUNK)
const HERE = __filename;

// -- frames -----------------------------------------------------------------------------

function encode(header, body) {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const data = body ? (Buffer.isBuffer(body) ? body : Buffer.from(body)) : Buffer.alloc(0);
  const prefix = Buffer.alloc(8);
  prefix.writeUInt32BE(head.length, 0);
  prefix.writeUInt32BE(data.length, 4);
  return Buffer.concat([prefix, head, data]);
}

class Frames {
  constructor(socket, onFrame) {
    this.buf = Buffer.alloc(0);
    this.onFrame = onFrame;
    socket.on('data', (chunk) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
      while (this.buf.length >= 8) {
        const headLen = this.buf.readUInt32BE(0);
        const bodyLen = this.buf.readUInt32BE(4);
        const end = 8 + headLen + bodyLen;
        if (this.buf.length < end) return;
        const header = JSON.parse(this.buf.subarray(8, 8 + headLen).toString('utf8'));
        const body = Buffer.from(this.buf.subarray(8 + headLen, end));
        this.buf = this.buf.subarray(end);
        this.onFrame(header, body);
      }
    });
  }
}

// -- logs: one per invocation, found through the async context ---------------------------

class Log {
  constructor() { this.parts = []; this.size = 0; this.cut = false; }
  write(text) {
    if (this.cut) return;
    if (this.size + text.length > LOG_LIMIT) {
      this.parts.push(text.slice(0, Math.max(0, LOG_LIMIT - this.size)));
      this.parts.push('\n[log truncated: over 1 MiB]\n');
      this.cut = true;
      return;
    }
    this.parts.push(text);
    this.size += text.length;
  }
  text() { return this.parts.join(''); }
}

const current = new AsyncLocalStorage();
let fallback = new Log(); // output outside any invocation: module code, timers
const logOf = () => (current.getStore() || { log: fallback }).log;

function stamp() { return new Date().toISOString(); }

function line(level, args) {
  const store = current.getStore();
  const id = store ? store.requestId : '';
  logOf().write(`${stamp()} ${id} [${level}] ${util.format(...args)}\n`);
}

console.log = (...a) => line('INFO', a);
console.info = (...a) => line('INFO', a);
console.debug = (...a) => line('DEBUG', a);
console.warn = (...a) => line('WARN', a);
console.error = (...a) => line('ERROR', a);
console.trace = (...a) => line('TRACE', a);
for (const stream of [process.stdout, process.stderr]) {
  stream.write = (chunk, encoding, cb) => {
    logOf().write(Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk));
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
}

const logger = {
  debug: (...a) => line('DEBUG', a),
  info: (...a) => line('INFO', a),
  log: (...a) => line('INFO', a),
  warn: (...a) => line('WARN', a),
  error: (...a) => line('ERROR', a),
};

// -- errors: FC's body, the runtime's frames removed ---------------------------------------

function userError(err, prefix = '', type = undefined) {
  const e = err instanceof Error ? err : new Error(typeof err === 'string' ? err : util.inspect(err));
  const stack = String(e.stack || '').split('\n').slice(1)
    .filter((l) => !l.includes(HERE) && !l.includes('node:internal'))
    .map((l) => l.trim());
  return {
    errorMessage: prefix + (e.message || e.name || 'Error'),
    errorType: type || e.name || 'Error',
    stackTrace: stack,
  };
}

class Failure extends Error {
  constructor(error) { super(error.errorMessage); this.error = error; }
}

// -- loading `file.export` -------------------------------------------------------------------

async function load(handler, what, codeDir) {
  const dot = handler.lastIndexOf('.');
  const file = handler.slice(0, dot);
  const name = handler.slice(dot + 1);
  const base = path.resolve(codeDir, file);
  const found = ['.js', '.mjs', '.cjs', ''].map((ext) => base + ext)
    .find((p) => fs.existsSync(p) && fs.statSync(p).isFile());
  if (!found) {
    throw new Failure({ errorMessage: `Cannot find module '${file}' (looked for ${file}.js, ${file}.mjs, ${file}.cjs)`,
      errorType: 'Runtime.ImportModuleError', stackTrace: [] });
  }
  let mod;
  try {
    if (found.endsWith('.mjs')) {
      mod = await import(pathToFileURL(found).href);
    } else {
      try {
        mod = require(found);
      } catch (err) {
        if (err && err.code === 'ERR_REQUIRE_ESM') mod = await import(pathToFileURL(found).href);
        else throw err;
      }
    }
  } catch (err) {
    if (err instanceof Failure) throw err;
    const type = err instanceof SyntaxError ? 'Runtime.UserCodeSyntaxError' : 'Runtime.ImportModuleError';
    throw new Failure(userError(err, `Unable to import module '${file}': `, type));
  }
  let fn = mod && mod[name];
  if (typeof fn !== 'function' && mod && mod.default && typeof mod.default[name] === 'function') {
    fn = mod.default[name];
  }
  if (typeof fn !== 'function') {
    throw new Failure({ errorMessage: `${what} '${name}' missing on module '${file}'`,
      errorType: 'Runtime.HandlerNotFound', stackTrace: [] });
  }
  return fn;
}

// -- context -----------------------------------------------------------------------------------

function makeContext(requestId, spec, deadlineMs, qualifier = 'LATEST') {
  const init = spec.initializer || {};
  const versionId = spec.versionId || 'LATEST';
  return {
    requestId,
    function: {
      name: spec.functionName, handler: spec.handler, memory: spec.memorySize,
      timeout: spec.timeout, initializer: init.handler || '',
      initializationTimeout: init.timeout || 0, qualifier, versionId,
    },
    // FC 2.0's service, as older runtimes have it (FC 3.0 has none: the function's name;
    // a 2.0 function 'svc$fn': 'svc').
    service: {
      name: spec.functionName.split('$')[0], logProject: spec.logProject || '',
      logStore: spec.logStore || '', qualifier, versionId,
    },
    tracing: { openTracingSpanContext: null, openTracingSpanBaggages: {}, jaegerEndpoint: null },
    logProject: spec.logProject || '',
    logStore: spec.logStore || '',
    region: spec.region,
    accountId: spec.accountId,
    credentials: { accessKeyId: '', accessKeySecret: '', securityToken: '' },
    logger,
    getRemainingTimeInMillis: () => Math.max(0, Math.floor(deadlineMs - Date.now())),
  };
}

// Calls fn(...args, callback) or awaits its promise: { value } or { error, handled }.
function call(fn, args) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (out) => { if (!done) { done = true; resolve(out); } };
    const callback = (err, value) => {
      if (err !== null && err !== undefined) finish({ error: err, handled: true });
      else finish({ value });
    };
    try {
      const out = fn.length > args.length ? fn(...args, callback) : fn(...args);
      if (out && typeof out.then === 'function') {
        out.then((value) => finish({ value }), (error) => finish({ error, handled: false }));
      } else if (fn.length <= args.length) {
        finish({ value: out });
      }
    } catch (error) {
      finish({ error, handled: false });
    }
  });
}

// Lambda's context, for a function created through Lambda's API (spec.semantics 'lambda'):
// the fields Lambda's Node.js runtime gives.
function makeLambdaContext(requestId, spec, deadlineMs, qualifier = 'LATEST', clientContext = '') {
  const versionId = spec.versionId || 'LATEST';
  const arn = `arn:aws:lambda:${spec.region}:${spec.accountId}:function:${spec.functionName}`;
  return {
    awsRequestId: requestId,
    functionName: spec.functionName,
    functionVersion: versionId === 'LATEST' ? '$LATEST' : versionId,
    invokedFunctionArn: qualifier === 'LATEST' ? arn : `${arn}:${qualifier}`,
    memoryLimitInMB: String(spec.memorySize),
    logGroupName: `/aws/lambda/${spec.functionName}`,
    logStreamName: (spec.env || {}).AWS_LAMBDA_LOG_STREAM_NAME || '',
    identity: undefined,
    clientContext: clientContext ? JSON.parse(clientContext) : undefined,
    callbackWaitsForEmptyEventLoop: true,
    getRemainingTimeInMillis: () => Math.max(0, Math.floor(deadlineMs - Date.now())),
  };
}

// Lambda's event: the payload JSON-decoded ({} when empty; a payload that is not JSON, from
// a trigger, as its text).
function lambdaEvent(body) {
  const text = body.toString('utf8');
  if (!text.trim()) return {};
  try {
    return JSON.parse(text);
  } catch (err) {
    return text;
  }
}

// -- Lambda's response streaming: the `awslambda` global of Lambda's Node.js runtime ----------

const STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HTTP_INTEGRATION = 'application/vnd.awslambda.http-integration-response';

// The stream a streaming handler writes to. With `live` (the caller takes a stream) the
// first write says `http_start` {status 200, its content type} and every write leaves as
// `body` frames, a write's callback waiting while the socket is full (the platform holds
// a reader that falls behind: back-pressure reaches the handler); else the writes are
// kept and make the invocation's result.
class ResponseStream extends Writable {
  constructor(send, socket, requestId, live, highWaterMark) {
    super(highWaterMark ? { highWaterMark } : {});
    this.send = send; this.socket = socket; this.requestId = requestId; this.live = live;
    this.contentType = 'application/octet-stream';
    this.begun = false; this.parts = []; this._onBeforeFirstWrite = null;
  }
  setContentType(type) {
    if (this.begun) throw new Error('The content type cannot be set after the first write');
    this.contentType = String(type);
  }
  _begin() {
    if (this.begun) return;
    this.begun = true;
    if (this.live) {
      this.send({ type: 'http_start', id: this.requestId, status: 200,
        headers: [['content-type', this.contentType]] });
    }
    const before = this._onBeforeFirstWrite;
    this._onBeforeFirstWrite = null;
    if (before) before((chunk) => this._out(Buffer.from(chunk)));
  }
  _out(chunk) {
    if (!this.live) { this.parts.push(chunk); return true; }
    let room = true;
    for (let at = 0; at < chunk.length; at += MAX_BODY_CHUNK) {
      room = this.send({ type: 'body', id: this.requestId }, chunk.subarray(at, at + MAX_BODY_CHUNK));
    }
    return room;
  }
  _write(chunk, encoding, done) {
    this._begin();
    if (!chunk.length || this._out(chunk)) done();
    else this.socket.once('drain', () => done());
  }
  _final(done) { this._begin(); done(); }
  body() { return Buffer.concat(this.parts); }
}

class HttpResponseStream {
  // The status, headers and cookies of a Function URL's answer, ahead of its body: the
  // prelude as JSON, then eight NUL bytes (Lambda's http-integration-response).
  static from(stream, prelude) {
    stream.setContentType(HTTP_INTEGRATION);
    const text = JSON.stringify(prelude || {});
    stream._onBeforeFirstWrite = (write) => { write(text); write(new Uint8Array(8)); };
    return stream;
  }
}

const awslambda = {
  streamifyResponse(handler, options) {
    const wrapped = handler;
    wrapped[STREAMING] = 'response';
    if (options && options.highWaterMark) wrapped.highWaterMark = options.highWaterMark;
    return wrapped;
  },
  HttpResponseStream,
};

function finished(stream) {
  return new Promise((resolve) => {
    if (stream.writableFinished || stream.destroyed) resolve();
    else { stream.once('finish', resolve); stream.once('close', resolve); }
  });
}

function toBody(value) {
  if (value === undefined || value === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  return Buffer.from(JSON.stringify(value), 'utf8');
}

// -- the instance ------------------------------------------------------------------------------

// While a pre-started instance waits: a cold start and an invocation of each kind (FC's,
// Lambda's) of a hello handler of its own, then forgotten (its module, its file in /tmp),
// so that V8 compiles the cold start's code paths now rather than during the function's.
async function rehearse() {
  let dir;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), '.funclet-rehearsal-'));
    const file = path.join(dir, 'rehearsal.js');
    fs.writeFileSync(file, "exports.handler = async (event) => 'hello';\n");
    const fn = await load('rehearsal.handler', 'Handler', dir);
    const spec = { functionName: 'rehearsal', region: '', accountId: '', env: {} };
    for (const lambda of [false, true]) {
      const ctx = lambda ? makeLambdaContext('rehearsal', spec, Date.now() + 1000)
        : makeContext('rehearsal', spec, Date.now() + 1000);
      const log = new Log();
      const input = lambda ? lambdaEvent(Buffer.from('{}')) : Buffer.from('{}');
      const out = await current.run({ log, requestId: 'rehearsal' }, () => call(fn, [input, ctx]));
      const body = lambda ? Buffer.from(JSON.stringify(out.value), 'utf8') : toBody(out.value);
      encode({ type: 'result', id: 'rehearsal', log: log.text() }, body);
      const wire = new EventEmitter(); // the frame reader, on a socket of its own
      new Frames(wire, () => {});
      wire.emit('data', encode({ type: 'invoke', id: 'rehearsal' }, body));
    }
    delete require.cache[file];
  } catch (err) {
    // A rehearsal that fails costs the real cold start its first time, nothing else.
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

// A pre-started instance: rehearse, say so, wait for `specialize` {spec}, become that
// function's.
async function specialization(socket, send) {
  await rehearse();
  return new Promise((resolve) => {
    const early = [];
    const frames = new Frames(socket, (header, body) => {
      if (header.type === 'specialize' && !frames.spec) {
        frames.spec = header.spec;
        resolve({ spec: header.spec, frames, early });
      } else {
        early.push([header, body]);
      }
    });
    send({ type: 'prestarted' });
  });
}

async function main() {
  let spec = JSON.parse(fs.readFileSync(4, 'utf8'));
  fs.closeSync(4);
  const socket = new net.Socket({ fd: 3, readable: true, writable: true });
  socket.setMaxListeners(0); // (streams waiting for 'drain', one each)
  const send = (header, body) => socket.write(encode(header, body));
  let reader = null;
  if (spec.prestarted) {
    reader = await specialization(socket, send);
    spec = reader.spec;
    if (spec.uid !== undefined && spec.uid !== null) { // the function's own user, from now on
      process.setgroups([]);
      process.setgid(spec.gid);
      process.setuid(spec.uid);
    }
    for (const key of Object.keys(process.env)) delete process.env[key];
    Object.assign(process.env, spec.env);
    if (spec.optDir) require('module').Module._initPaths(); // NODE_PATH: its layers
    process.chdir(spec.codeDir); // the code is mounted now: enter it again
  }
  if (spec.semantics === 'lambda') {
    process.env.LAMBDA_TASK_ROOT = spec.codeDir;
    globalThis.awslambda = awslambda; // before the handler's module runs
  }
  const started = process.hrtime.bigint();
  const initLog = fallback;
  let handler;
  let preStop = null;
  try {
    handler = await load(spec.handler, 'Handler', spec.codeDir);
    if (spec.preStop) preStop = await load(spec.preStop.handler, 'PreStop handler', spec.codeDir);
    if (spec.initializer) {
      const initializer = await load(spec.initializer.handler, 'Initializer', spec.codeDir);
      send({ type: 'initializing' });
      const requestId = spec.requestId || '';
      initLog.write(`FC Initialize Start RequestId: ${requestId}\n`);
      const ctx = makeContext(requestId, spec, Date.now() + spec.initializer.timeout * 1000);
      const out = await current.run({ log: initLog, requestId }, () => call(initializer, [ctx]));
      initLog.write(`FC Initialize End RequestId: ${requestId}\n`);
      if (out.error !== undefined) throw new Failure(userError(out.error, 'Initializer failed: '));
    }
  } catch (err) {
    const error = err instanceof Failure ? err.error : userError(err);
    send({ type: 'init_error', error, log: initLog.text() });
    socket.end(() => process.exit(0));
    return;
  }
  fallback = new Log();
  const initMs = Number(process.hrtime.bigint() - started) / 1e6;
  send({ type: 'ready', initMs, log: initLog.text(), handlerKind: 'event' });

  const lambda = spec.semantics === 'lambda';
  const version = (spec.versionId || 'LATEST') === 'LATEST' ? '$LATEST' : spec.versionId;
  async function invoke(header, event) {
    const requestId = header.id;
    // Sent ahead, behind the spec: its timeout counts from now.
    const deadline = header.deadlineIn !== undefined ? Date.now() + header.deadlineIn
      : header.deadline;
    const log = new Log();
    const end = lambda ? `END RequestId: ${requestId}\n` : `FC Invoke End RequestId: ${requestId}\n`;
    log.write(lambda ? `START RequestId: ${requestId} Version: ${version}\n`
      : `FC Invoke Start RequestId: ${requestId}\n`);
    const ctx = lambda ? makeLambdaContext(requestId, spec, deadline, header.qualifier,
      header.clientContext)
      : makeContext(requestId, spec, deadline, header.qualifier);
    const input = lambda ? lambdaEvent(event) : event;
    if (lambda && handler[STREAMING] === 'response') {
      await invokeStreaming(header, input, ctx, log, end);
      return;
    }
    const out = await current.run({ log, requestId }, () => call(handler, [input, ctx]));
    if (out.error !== undefined) {
      const error = userError(out.error);
      log.write(end);
      send({ type: 'error', id: requestId, error, handled: out.handled, log: log.text() });
      return;
    }
    let body;
    try {
      // Lambda's: the result JSON-encoded (undefined is null).
      body = lambda ? Buffer.from(JSON.stringify(out.value === undefined ? null : out.value), 'utf8')
        : toBody(out.value);
    } catch (err) {
      log.write(end);
      const error = lambda ? { errorMessage: `Unable to stringify response body: ${err.message}`,
        errorType: 'Runtime.MarshalError', stackTrace: [] } : userError(err);
      send({ type: 'error', id: requestId, error, log: log.text() });
      return;
    }
    log.write(end);
    send({ type: 'result', id: requestId, log: log.text() }, body);
  }

  // A streaming handler `(event, responseStream, context)`, as Lambda's runtime runs it:
  // it must be async; done once its promise resolved and its stream finished (a stream
  // never ended runs into the timeout); an error after the first write still fails the
  // invocation (InvokeComplete says it).
  async function invokeStreaming(header, input, ctx, log, end) {
    const requestId = header.id;
    const stream = new ResponseStream(send, socket, requestId, Boolean(header.stream),
      handler.highWaterMark);
    let failure;
    stream.on('error', (err) => { if (failure === undefined) failure = err; });
    await current.run({ log, requestId }, async () => {
      try {
        const out = handler(input, stream, ctx);
        if (!out || typeof out.then !== 'function') {
          throw new Error('Streaming does not support non-async handlers.');
        }
        const value = await out;
        if (value !== undefined) console.warn('Streaming handlers ignore return values.');
        if (failure === undefined) await finished(stream);
      } catch (err) {
        if (failure === undefined) failure = err;
      }
    });
    log.write(end);
    if (failure !== undefined) {
      stream.destroy();
      send({ type: 'error', id: requestId, error: userError(failure), log: log.text() });
    } else {
      send({ type: 'result', id: requestId, log: log.text() }, stream.live ? undefined : stream.body());
    }
  }

  async function runPreStop(header) {
    const log = new Log();
    const requestId = header.id || '';
    let error = null;
    if (preStop) {
      log.write(`FC PreStop Start RequestId: ${requestId}\n`);
      const ctx = makeContext(requestId, spec, header.deadline, header.qualifier);
      const out = await current.run({ log, requestId }, () => call(preStop, [ctx]));
      if (out.error !== undefined) error = userError(out.error);
      log.write(`FC PreStop End RequestId: ${requestId}\n`);
    }
    send({ type: 'pre_stop_done', error, log: log.text() });
  }

  const onFrame = (header, body) => {
    if (header.type === 'invoke') invoke(header, body);
    else if (header.type === 'pre_stop') runPreStop(header);
  };
  if (reader) {
    reader.frames.onFrame = onFrame;
    for (const [header, body] of reader.early) onFrame(header, body);
  } else {
    new Frames(socket, onFrame);
  }
  socket.on('end', () => process.exit(0));
  socket.on('error', () => process.exit(0));
}

process.on('uncaughtException', (err) => {
  line('ERROR', [`Uncaught exception: ${err && err.stack ? err.stack : err}`]);
});
process.on('unhandledRejection', (err) => {
  line('ERROR', [`Unhandled promise rejection: ${err && err.stack ? err.stack : err}`]);
});

main();
