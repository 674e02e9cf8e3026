// Shared helpers for the dps-rs interop scripts.
//
// Everything here drives the *official* Azure IoT Node SDKs unchanged. The only
// concession to a non-443 test server is the documented no-SDK-change shim
// (shared/reference/sdk-wire-captures.md §1): the Node HTTP device transport and
// the Node service client hard-code port 443 in azure-iot-http-base, so we hand
// each of them an azure-iot-http-base `Http` whose `http.agent` is an
// `https.Agent` carrying `{host: 127.0.0.1, port: PORT}`. Node's Agent merges its
// own options over the request's, so the TCP connection goes to
// 127.0.0.1:PORT while the Host header, the TLS SNI and certificate
// verification all stay on the configured host name (`localhost`).
//
// Configuration comes from the environment (run.sh sets all of it):
//   DPS_HOST            host name the SDKs are given (Host header, SNI, SAS sr)  [localhost]
//   DPS_CONNECT_HOST    address actually connected to                            [127.0.0.1]
//   DPS_PORT            TLS port of dpsd's device + service REST API              [18443]
//   DPS_MQTT_PORT       TLS port of dpsd's MQTT device endpoint                   [8883]
//   DPS_ID_SCOPE        id scope                                                  [0ne00000001]
//   DPS_POLICY_NAME     service policy name                                       [provisioningserviceowner]
//   DPS_POLICY_KEY      service policy key (base64)
//   DPS_HUBS            comma-separated hub host names of the scope
//   NODE_EXTRA_CA_CERTS dpsd's dev CA (read by Node at start-up)
'use strict';

const https = require('https');
const path = require('path');
const crypto = require('crypto');
const util = require('util');

const cfg = {
  host: process.env.DPS_HOST || 'localhost',
  connectHost: process.env.DPS_CONNECT_HOST || '127.0.0.1',
  port: Number(process.env.DPS_PORT || 18443),
  mqttPort: Number(process.env.DPS_MQTT_PORT || 8883),
  idScope: process.env.DPS_ID_SCOPE || '0ne00000001',
  policyName: process.env.DPS_POLICY_NAME || 'provisioningserviceowner',
  policyKey: process.env.DPS_POLICY_KEY || 'dGVzdC1rZXktc2VydmljZS0wMTIzNDU2Nzg5YWJjZGU=',
  hubs: (process.env.DPS_HUBS || 'hub-a.example.net,hub-b.example.net')
    .split(',').map((s) => s.trim()).filter(Boolean),
};
if (!Number.isInteger(cfg.port) || cfg.port <= 0 || cfg.port > 65535) {
  throw new Error('DPS_PORT is not a valid port: ' + process.env.DPS_PORT);
}
if (!Number.isInteger(cfg.mqttPort) || cfg.mqttPort <= 0 || cfg.mqttPort > 65535) {
  throw new Error('DPS_MQTT_PORT is not a valid port: ' + process.env.DPS_MQTT_PORT);
}

// ---------------------------------------------------------------------------
// Module resolution: use the exact copy of a transitive dependency that a given
// SDK package itself resolves (device-http pins azure-iot-http-base 1.12.1, the
// service SDK pins 1.12.2; npm nests one of them).
// ---------------------------------------------------------------------------
function requireFrom(pkg, mod) {
  const base = path.dirname(require.resolve(pkg + '/package.json'));
  return require(require.resolve(mod, { paths: [base] }));
}

function sdkVersion(pkg) {
  return require(pkg + '/package.json').version;
}

// ---------------------------------------------------------------------------
// Port shim
// ---------------------------------------------------------------------------
const agents = [];

/** An https.Agent that forces every request onto connectHost:port. */
function makeAgent() {
  // keepAlive mirrors Node 20's globalAgent (what the stock 443 path uses), so
  // dpsd sees `Connection: keep-alive` and several requests per TLS connection,
  // exactly as in the captures. Free keep-alive sockets are unref'd by Node.
  const agent = new https.Agent({ host: cfg.connectHost, port: cfg.port, keepAlive: true });
  agents.push(agent);
  return agent;
}

/** Build an azure-iot-http-base Http (the copy `ownerPkg` uses) routed through the shim. */
function makeHttpBase(ownerPkg) {
  const { Http: HttpBase } = requireFrom(ownerPkg, 'azure-iot-http-base');
  const httpBase = new HttpBase();
  httpBase.setOptions({ http: { agent: makeAgent() } });
  return httpBase;
}

function destroyAgents() {
  for (const a of agents.splice(0)) a.destroy();
}

// ---------------------------------------------------------------------------
// Service client
// ---------------------------------------------------------------------------
const SERVICE_PKG = 'azure-iot-provisioning-service';

function serviceConnectionString() {
  return `HostName=${cfg.host};SharedAccessKeyName=${cfg.policyName};SharedAccessKey=${cfg.policyKey}`;
}

/**
 * ProvisioningServiceClient exactly as `fromConnectionString` builds it, except that
 * its RestApiClient gets the shimmed http-base (public constructor, 1.11.x:
 * `new ProvisioningServiceClient(config, restApiClient)`,
 * `new RestApiClient(config, userAgent, httpRequestBuilder)`).
 */
function createServiceClient() {
  const { ProvisioningServiceClient } = require(SERVICE_PKG);
  const { ConnectionString, SharedAccessSignature } = requireFrom(SERVICE_PKG, 'azure-iot-common');
  const { RestApiClient } = requireFrom(SERVICE_PKG, 'azure-iot-http-base');
  const cn = ConnectionString.parse(serviceConnectionString());
  const config = {
    host: cn.HostName,
    // Same as fromConnectionString; RestApiClient re-signs it per request with se = now + 3600.
    sharedAccessSignature: SharedAccessSignature.create(cn.HostName, cn.SharedAccessKeyName, cn.SharedAccessKey, Date.now()),
    tokenCredential: undefined,
  };
  const userAgent = SERVICE_PKG + '/' + sdkVersion(SERVICE_PKG);
  const rest = new RestApiClient(config, userAgent, makeHttpBase(SERVICE_PKG));
  return new ProvisioningServiceClient(config, rest);
}

// ---------------------------------------------------------------------------
// Device client (HTTP transport, symmetric key)
// ---------------------------------------------------------------------------
const DEVICE_HTTP_PKG = 'azure-iot-provisioning-device-http';

/** A fresh RegistrationClient for one registration id / key (one transport per client). */
function createDeviceClient(registrationId, symmetricKey) {
  const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
  const { Http } = require(DEVICE_HTTP_PKG);
  const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
  const transport = new Http(makeHttpBase(DEVICE_HTTP_PKG));
  const security = new SymmetricKeySecurityClient(registrationId, symmetricKey);
  return ProvisioningDeviceClient.create(cfg.host, cfg.idScope, transport, security);
}

/** register() as a promise; resolves with the registrationState object. */
function registerDevice(registrationId, symmetricKey) {
  return createDeviceClient(registrationId, symmetricKey).register();
}

// ---------------------------------------------------------------------------
// Device client (MQTT transport, symmetric key)
// ---------------------------------------------------------------------------
const DEVICE_MQTT_PKG = 'azure-iot-provisioning-device-mqtt';

/**
 * A fresh RegistrationClient over MQTT. No shim needed: the MQTT transport builds
 * 'mqtts://' + provisioningHost and mqtt.js honours a `host:port` there
 * (sdk-wire-captures.md §1), so the host given is `localhost:MQTT_PORT`; TLS SNI and
 * certificate verification stay on `localhost`, and /etc/hosts maps it to 127.0.0.1.
 */
function createMqttDeviceClient(registrationId, symmetricKey) {
  const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
  const { Mqtt } = require(DEVICE_MQTT_PKG);
  const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
  const security = new SymmetricKeySecurityClient(registrationId, symmetricKey);
  return ProvisioningDeviceClient.create(`${cfg.host}:${cfg.mqttPort}`, cfg.idScope, new Mqtt(), security);
}

/** register() over MQTT as a promise; resolves with the registrationState object. */
function registerDeviceMqtt(registrationId, symmetricKey) {
  return createMqttDeviceClient(registrationId, symmetricKey).register();
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/** Group-enrollment device key: base64(HMAC-SHA256(base64decode(groupKey), registrationId)). */
function deriveDeviceKey(groupKey, registrationId) {
  return crypto.createHmac('sha256', Buffer.from(groupKey, 'base64'))
    .update(registrationId, 'utf8')
    .digest('base64');
}

/** A random 32-byte base64 key (what the captures' SDK runs used for explicit keys). */
function randomKey(bytes = 32) {
  return crypto.randomBytes(bytes).toString('base64');
}

function randomSuffix() {
  return crypto.randomBytes(4).toString('hex');
}

// ---------------------------------------------------------------------------
// Assertions and reporting
// ---------------------------------------------------------------------------
class CheckError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CheckError';
  }
}

function show(v) {
  // SDK promises resolve to {responseBody, httpResponse}: never dump the IncomingMessage
  if (v && typeof v === 'object' && 'httpResponse' in v && 'responseBody' in v) {
    v = { status: v.httpResponse && v.httpResponse.statusCode, responseBody: v.responseBody };
  }
  const out = util.inspect(v, { depth: 6, breakLength: Infinity, compact: true });
  return out.length > 1500 ? out.slice(0, 1500) + '...' : out;
}

/** assert-style: throw a CheckError with a clear message (and optional details). */
function check(cond, message, details) {
  if (!cond) {
    throw new CheckError(message + (details === undefined ? '' : '\n      details: ' + show(details)));
  }
}

function checkEqual(actual, expected, what) {
  check(actual === expected, `${what}: expected ${show(expected)}, got ${show(actual)}`);
}

/**
 * HTTP status of an SDK error: http-base puts the IncomingMessage on err.response; the MQTT
 * transport puts {topic, payload} on err.transportObject, the status being the topic's
 * `$dps/registrations/res/{status}/`.
 */
function errStatus(err) {
  if (!err) return undefined;
  if (err.response && typeof err.response.statusCode === 'number') return err.response.statusCode;
  const t = err.transportObject;
  if (t && typeof t.statusCode === 'number') return t.statusCode;
  if (t && typeof t.topic === 'string') {
    const m = t.topic.match(/^\$dps\/registrations\/res\/(\d+)\//);
    if (m) return Number(m[1]);
  }
  return undefined;
}

function errBody(err) {
  if (!err) return undefined;
  const raw = err.responseBody !== undefined ? err.responseBody : err.result;
  if (typeof raw !== 'string') return raw;
  try { return JSON.parse(raw); } catch (_) { return raw; }
}

function describeErr(err) {
  if (!err) return String(err);
  const body = errBody(err);
  const raw = typeof err.responseBody === 'string' ? err.responseBody : undefined;
  // http-base's translateError makes the message 'Error: ' + body when it can't parse it
  const dupMsg = raw !== undefined && (err.message === 'Error: ' + raw || err.message === raw);
  const parts = [dupMsg ? (err.name || 'Error') : `${err.name || 'Error'}: ${err.message}`];
  const st = errStatus(err);
  if (st !== undefined) parts.push(`HTTP ${st}`);
  if (err.transportObject && typeof err.transportObject.topic === 'string') parts.push('topic ' + err.transportObject.topic);
  if (body !== undefined && body !== '') parts.push('body ' + (typeof body === 'string' ? body : JSON.stringify(body)));
  if (err.code) parts.push('code ' + err.code);
  return parts.join(' | ');
}

/**
 * Await `promise` and require it to reject. `expect.status` may be a number or an
 * array of acceptable statuses; `expect.name` an error class name (or array).
 * Returns the error.
 */
async function expectReject(promise, what, expect = {}) {
  let value;
  try {
    value = await promise;
  } catch (err) {
    const st = errStatus(err);
    if (expect.status !== undefined) {
      const ok = [].concat(expect.status);
      check(ok.includes(st), `${what}: expected HTTP ${ok.join(' or ')}, got ${st === undefined ? 'no HTTP status' : st}: ${describeErr(err)}`);
    }
    if (expect.name !== undefined) {
      const ok = [].concat(expect.name);
      check(ok.includes(err.name), `${what}: expected ${ok.join(' or ')}, got ${describeErr(err)}`);
    }
    return err;
  }
  throw new CheckError(`${what}: expected the call to fail, but it succeeded with ${show(value)}`);
}

/** Run `fn`, turning a rejection into a CheckError that names `what` and the HTTP details. */
async function must(promise, what) {
  try {
    return await promise;
  } catch (err) {
    if (err instanceof CheckError) throw err;
    throw new CheckError(`${what} failed: ${describeErr(err)}`);
  }
}

/** Longest a step may take unless it says otherwise (`opts.timeoutMs`). */
const STEP_TIMEOUT_MS = 60000;

/** Tiny step runner: named steps, per-step PASS/FAIL lines, exit code at the end. */
function createRunner(scriptName) {
  const results = [];
  let aborted = false;
  const t0 = Date.now();

  async function step(name, fn, opts = {}) {
    if (aborted && !opts.always) {
      results.push({ name, ok: false, skipped: true });
      console.log(`  SKIP ${name} (an earlier critical step failed)`);
      return undefined;
    }
    const s = Date.now();
    // A step whose SDK call never settles fails on its own instead of stalling the script.
    const limitMs = opts.timeoutMs || STEP_TIMEOUT_MS;
    let timer;
    const expired = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new CheckError(`no result within ${limitMs} ms (the SDK call never settled)`)), limitMs);
    });
    try {
      const v = await Promise.race([fn(), expired]);
      results.push({ name, ok: true });
      console.log(`  PASS ${name} (${Date.now() - s} ms)`);
      return v;
    } catch (err) {
      results.push({ name, ok: false });
      const msg = err instanceof CheckError ? err.message : `unexpected ${describeErr(err)}\n${err && err.stack}`;
      console.log(`  FAIL ${name} (${Date.now() - s} ms)\n      ${msg}`);
      if (opts.critical) aborted = true;
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Best-effort cleanup action: logged, never counted. */
  async function cleanup(name, fn) {
    try {
      await fn();
      console.log(`  cleanup ${name}: ok`);
    } catch (err) {
      console.log(`  cleanup ${name}: ${describeErr(err)}`);
    }
  }

  let finished = false;

  function finish() {
    finished = true;
    destroyAgents();
    const failed = results.filter((r) => !r.ok);
    const skipped = failed.filter((r) => r.skipped).length;
    const passed = results.length - failed.length;
    // (deliberately not the bare "N passed, M failed" shape: run.sh prints the one summary line)
    console.log(`${scriptName}: ${passed} of ${results.length} steps passed, ${failed.length - skipped} failed, ` +
      `${skipped} not run (${Date.now() - t0} ms)`);
    const hard = failed.filter((r) => !r.skipped);
    if (hard.length) console.log(`${scriptName}: failed steps: ${hard.map((r) => r.name).join('; ')}`);
    process.exitCode = failed.length ? 1 : 0;
  }

  return { step, cleanup, finish, isFinished: () => finished };
}

/** Standard script entry: print context, run main(runner), always finish. */
function main(scriptName, body) {
  const runner = createRunner(scriptName);
  console.log(`${scriptName}: dps host ${cfg.host} via ${cfg.connectHost}:${cfg.port} (mqtt ${cfg.host}:${cfg.mqttPort}), ` +
    `id scope ${cfg.idScope}, SDKs: device ${sdkVersion('azure-iot-provisioning-device')}, ` +
    `device-http ${sdkVersion(DEVICE_HTTP_PKG)}, device-mqtt ${sdkVersion(DEVICE_MQTT_PKG)}, ` +
    `symmetric-key ${sdkVersion('azure-iot-security-symmetric-key')}, service ${sdkVersion(SERVICE_PKG)}`);
  if (!process.env.NODE_EXTRA_CA_CERTS) {
    console.log(`${scriptName}: warning: NODE_EXTRA_CA_CERTS is not set; TLS verification will fail against a dev CA`);
  }
  // An SDK call whose promise never settles lets the event loop run dry and Node exit with
  // status 0 half-way through the script: that is a failure, not a pass.
  process.on('exit', () => {
    if (!runner.isFinished()) {
      console.log(`${scriptName}: exited before the script finished (a step's promise never settled)`);
      process.exitCode = 1;
    }
  });
  process.on('unhandledRejection', (err) => {
    console.log(`${scriptName}: unhandled rejection: ${describeErr(err)}`);
    process.exitCode = 1;
  });
  Promise.resolve()
    .then(() => body(runner))
    .catch(async (err) => {
      console.log(`${scriptName}: aborted: ${describeErr(err)}\n${err && err.stack}`);
      await runner.step('script body', () => { throw err; }, { always: true });
    })
    .finally(() => runner.finish());
}

module.exports = {
  cfg,
  requireFrom,
  sdkVersion,
  makeAgent,
  makeHttpBase,
  destroyAgents,
  serviceConnectionString,
  createServiceClient,
  createDeviceClient,
  registerDevice,
  createMqttDeviceClient,
  registerDeviceMqtt,
  deriveDeviceKey,
  randomKey,
  randomSuffix,
  CheckError,
  check,
  checkEqual,
  show,
  errStatus,
  errBody,
  describeErr,
  expectReject,
  must,
  createRunner,
  main,
};
