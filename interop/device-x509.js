// X.509 device registration with the official Node device SDK: azure-iot-provisioning-device
// 1.9.1 with the -http and -mqtt transports and azure-iot-security-x509 1.7.12. The device's
// certificate goes in the TLS handshake; no Authorization header, no MQTT password.
//
// The PKI comes from x509-pki.js, run by run.sh before dpsd starts (DPS_X509_DIR): dpsd's
// config holds the root as the verified scope CA "interop-root". Enrollments are made with
// the official Node service SDK:
//   - an individual enrollment pinning a self-signed device certificate, provisioned over
//     HTTP and over MQTT;
//   - an enrollment group with caReferences -> interop-root, whose devices (signed by an
//     intermediate they present in TLS) provision over HTTP and MQTT;
//   - a device whose certificate is not enrolled is refused with 401.
'use strict';

const fs = require('fs');
const path = require('path');
const {
  cfg, main, createServiceClient, makeHttpBase, check, checkEqual, show, expectReject, must,
  errStatus, describeErr,
} = require('./lib');

const SCRIPT = 'device-x509';
const DIR = process.env.DPS_X509_DIR;
if (!DIR) throw new Error('DPS_X509_DIR is not set (run.sh generates the PKI there)');
const read = (f) => fs.readFileSync(path.join(DIR, f), 'utf8');

const IND_ID = 'interop-x509-ind';
const GRP_ID = 'interop-x509-grp';
const GRP_MQTT_ID = 'interop-x509-grp-mqtt';
const GROUP = 'interop-x509-group';

const device = (name) => ({ cert: read(`${name}.pem`), key: read(`${name}-key.pem`) });

function security(registrationId, identity) {
  const { X509Security } = require('azure-iot-security-x509');
  return new X509Security(registrationId, identity);
}

function registerHttp(registrationId, identity) {
  const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
  const { Http } = require('azure-iot-provisioning-device-http');
  const transport = new Http(makeHttpBase('azure-iot-provisioning-device-http'));
  return ProvisioningDeviceClient.create(cfg.host, cfg.idScope, transport,
    security(registrationId, identity)).register();
}

function registerMqtt(registrationId, identity) {
  const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
  const { Mqtt } = require('azure-iot-provisioning-device-mqtt');
  return ProvisioningDeviceClient.create(`${cfg.host}:${cfg.mqttPort}`, cfg.idScope, new Mqtt(),
    security(registrationId, identity)).register();
}

function checkAssigned(state, regId, what) {
  check(state && typeof state === 'object', `${what}: register() must resolve with a registrationState object`, state);
  checkEqual(state.status, 'assigned', `${what}: status`);
  checkEqual(state.registrationId, regId, `${what}: registrationId`);
  checkEqual(state.deviceId, regId, `${what}: deviceId`);
  check(cfg.hubs.includes(state.assignedHub),
    `${what}: assignedHub must be one of ${cfg.hubs.join(', ')}, got ${show(state.assignedHub)}`);
}

async function removeQuietly(fn) {
  try { await fn(); } catch (err) { if (errStatus(err) !== 404) throw err; }
}

main(SCRIPT, async ({ step, cleanup }) => {
  const svc = createServiceClient();
  const ind = device('device-ind');

  try {
    await cleanup('pre-clean', async () => {
      await removeQuietly(() => svc.deleteIndividualEnrollment(IND_ID));
      await removeQuietly(() => svc.deleteEnrollmentGroup(GROUP));
    });

    await step(`service SDK: individual X.509 enrollment ${IND_ID} (clientCertificates)`, async () => {
      const res = await must(svc.createOrUpdateIndividualEnrollment({
        registrationId: IND_ID,
        attestation: { type: 'x509', x509: { clientCertificates: { primary: { certificate: ind.cert } } } },
        provisioningStatus: 'enabled',
      }), 'PUT /enrollments/' + IND_ID);
      const primary = res.responseBody.attestation.x509.clientCertificates.primary;
      check(!primary.certificate, 'the certificate must never be returned', primary);
      checkEqual(primary.info.subjectName, `CN=${IND_ID}, O=dps-rs interop`, 'info.subjectName');
      checkEqual(primary.info.version, 3, 'info.version');
    }, { critical: true });

    await step(`service SDK: enrollment group ${GROUP} with caReferences -> interop-root`, async () => {
      const res = await must(svc.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: GROUP,
        attestation: { type: 'x509', x509: { caReferences: { primary: 'interop-root' } } },
        provisioningStatus: 'enabled',
      }), 'PUT /enrollmentGroups/' + GROUP);
      checkEqual(res.responseBody.attestation.x509.caReferences.primary, 'interop-root', 'caReferences.primary');
    }, { critical: true });

    await step(`HTTP: individual X.509 device ${IND_ID} -> assigned`, async () => {
      const state = await must(registerHttp(IND_ID, ind), 'register ' + IND_ID);
      checkAssigned(state, IND_ID, IND_ID);
      console.log(`      assigned to ${state.assignedHub} as ${state.deviceId}`);
    });

    await step(`MQTT: individual X.509 device ${IND_ID} -> assigned`, async () => {
      const state = await must(registerMqtt(IND_ID, ind), 'register ' + IND_ID + ' over MQTT');
      checkAssigned(state, IND_ID, IND_ID + ' (MQTT)');
    });

    await step(`HTTP: CA-group device ${GRP_ID} (leaf + intermediate) -> assigned`, async () => {
      const state = await must(registerHttp(GRP_ID, device('device-grp')), 'register ' + GRP_ID);
      checkAssigned(state, GRP_ID, GRP_ID);
      console.log(`      assigned to ${state.assignedHub} as ${state.deviceId}`);
    });

    await step(`MQTT: CA-group device ${GRP_MQTT_ID} -> assigned`, async () => {
      const state = await must(registerMqtt(GRP_MQTT_ID, device('device-grp2')), 'register ' + GRP_MQTT_ID);
      checkAssigned(state, GRP_MQTT_ID, GRP_MQTT_ID);
    });

    await step(`HTTP: ${GRP_ID}'s certificate claiming registration id ${IND_ID} -> 401`, async () => {
      const err = await expectReject(registerHttp(IND_ID, device('device-grp')),
        'register with a certificate whose CN differs', { status: 401 });
      console.log(`      rejected: ${describeErr(err)}`);
    });

    await step('service SDK: the registration records name the X.509 devices', async () => {
      const res = await must(svc.getDeviceRegistrationState(GRP_ID), 'GET /registrations/' + GRP_ID);
      checkEqual(res.responseBody.status, 'assigned', 'status');
      checkEqual(res.responseBody.registrationId, GRP_ID, 'registrationId');
    });
  } finally {
    await cleanup('delete enrollment ' + IND_ID, () => removeQuietly(() => svc.deleteIndividualEnrollment(IND_ID)));
    await cleanup('delete enrollment group ' + GROUP, () => removeQuietly(() => svc.deleteEnrollmentGroup(GROUP)));
  }
});
