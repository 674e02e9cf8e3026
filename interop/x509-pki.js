// A throw-away X.509 test PKI for the interop run, made with Node's crypto only (no openssl,
// no npm package): ECDSA P-256 keys and a minimal DER certificate encoder.
//
//   node x509-pki.js DIR
//
// writes into DIR (PEM):
//   root.pem / root-key.pem                 CA "dps-rs interop root" (configured in dpsd as a
//                                           verified [[scope.ca]] named "interop-root")
//   intermediate.pem / intermediate-key.pem CA signed by the root
//   device-ind.pem / device-ind-key.pem     self-signed device, CN interop-x509-ind
//   device-grp.pem / device-grp-key.pem     device signed by the intermediate, CN
//                                           interop-x509-grp; device-grp.pem holds the leaf
//                                           followed by the intermediate (the TLS chain)
//   device-grp2.pem / device-grp2-key.pem   same, CN interop-x509-grp-mqtt
//
// Every key is generated on each run and lives in run.sh's temp dir only.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

// --- DER -------------------------------------------------------------------------------------
function len(n) {
  if (n < 0x80) return Buffer.from([n]);
  const bytes = [];
  for (let v = n; v > 0; v >>= 8) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag, body) => Buffer.concat([Buffer.from([tag]), len(body.length), body]);
const seq = (...parts) => tlv(0x30, Buffer.concat(parts));
const set = (...parts) => tlv(0x31, Buffer.concat(parts));
const explicit = (n, inner) => tlv(0xa0 + n, inner);
const bool = (v) => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
const octets = (b) => tlv(0x04, b);
const bits = (b, unused = 0) => tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
const utf8 = (s) => tlv(0x0c, Buffer.from(s, 'utf8'));
function int(b) {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  return tlv(0x02, b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}
function oid(s) {
  const arcs = s.split('.').map(Number);
  const out = [40 * arcs[0] + arcs[1]];
  for (const a of arcs.slice(2)) {
    const chunk = [a & 0x7f];
    for (let v = a >> 7; v > 0; v >>= 7) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}
function utcTime(d) {
  const p = (n) => String(n).padStart(2, '0');
  const s = p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes()) + p(d.getUTCSeconds()) + 'Z';
  return tlv(0x17, Buffer.from(s, 'ascii'));
}

// --- certificates ----------------------------------------------------------------------------
const ECDSA_SHA256 = seq(oid('1.2.840.10045.4.3.2'));
const name = (cn) => seq(
  set(seq(oid('2.5.4.10'), utf8('dps-rs interop'))),
  set(seq(oid('2.5.4.3'), utf8(cn))),
);
const ext = (id, critical, value) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

/** A certificate for `cn` with `key`, signed by `issuer` ({name, key}) or self-signed. */
function certificate(cn, key, issuer, ca) {
  const subject = name(cn);
  const now = Date.now();
  const serial = crypto.randomBytes(16);
  serial[0] &= 0x7f;
  serial[0] |= 0x01;
  const extensions = ca
    ? [
      ext('2.5.29.19', true, seq(bool(true))),                   // basicConstraints cA
      ext('2.5.29.15', true, bits(Buffer.from([0x06]), 1)),      // keyCertSign, cRLSign
    ]
    : [
      ext('2.5.29.19', true, seq()),                             // not a CA
      ext('2.5.29.15', true, bits(Buffer.from([0x80]), 7)),      // digitalSignature
      ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.2'))),    // clientAuth
    ];
  const tbs = seq(
    explicit(0, int(Buffer.from([2]))),
    int(serial),
    ECDSA_SHA256,
    issuer ? issuer.name : subject,
    seq(utcTime(new Date(now - 86400e3)), utcTime(new Date(now + 30 * 86400e3))),
    subject,
    key.publicKey.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...extensions)),
  );
  const signature = crypto.sign('sha256', tbs, (issuer || { key }).key.privateKey);
  const der = seq(tbs, ECDSA_SHA256, bits(signature));
  return { der, name: subject, key, pem: pem(der) };
}

function pem(der) {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`;
}

const newKey = () => crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
const keyPem = (c) => c.key.privateKey.export({ type: 'pkcs8', format: 'pem' });

function main(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const write = (file, text) => fs.writeFileSync(path.join(dir, file), text, { mode: 0o600 });
  const root = certificate('dps-rs interop root', newKey(), null, true);
  const inter = certificate('dps-rs interop intermediate', newKey(), root, true);
  const ind = certificate('interop-x509-ind', newKey(), null, false);
  const grp = certificate('interop-x509-grp', newKey(), inter, false);
  const grp2 = certificate('interop-x509-grp-mqtt', newKey(), inter, false);
  write('root.pem', root.pem);
  write('root-key.pem', keyPem(root));
  write('intermediate.pem', inter.pem);
  write('intermediate-key.pem', keyPem(inter));
  write('device-ind.pem', ind.pem);
  write('device-ind-key.pem', keyPem(ind));
  write('device-grp.pem', grp.pem + inter.pem);
  write('device-grp-key.pem', keyPem(grp));
  write('device-grp2.pem', grp2.pem + inter.pem);
  write('device-grp2-key.pem', keyPem(grp2));
  // Sanity check with Node's own parser: the chain verifies.
  const X = crypto.X509Certificate;
  const [r, i, d] = [new X(root.pem), new X(inter.pem), new X(grp.pem)];
  if (!i.verify(r.publicKey) || !d.verify(i.publicKey) || !d.checkIssued(i)) {
    throw new Error('generated chain does not verify');
  }
}

if (require.main === module) {
  if (process.argv.length !== 3) {
    console.error('usage: node x509-pki.js DIR');
    process.exit(2);
  }
  main(process.argv[2]);
}

module.exports = { main };
