// Device registration over MQTT (TLS, dpsd's [listen] mqtt port) with the official Node
// device SDK (azure-iot-provisioning-device + -mqtt + azure-iot-security-symmetric-key),
// enrollments set up with the official Node service SDK.
'use strict';

const {
  cfg, main, createServiceClient, registerDeviceMqtt, deriveDeviceKey,
  check, checkEqual, show, expectReject, must, errStatus, errBody, describeErr,
} = require('./lib');

const SCRIPT = 'device-mqtt';

const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');

// Ids of their own, so this script and device-http.js never share a record.
const IND_ID = 'interop-mqtt-dev-1';
const IND_KEYS = {
  primaryKey: b64('interop-mqtt-dev-1-primary-01234'),
  secondaryKey: b64('interop-mqtt-dev-1-secondary-012'),
};
const GROUP_ID = 'interop-mqtt-group-1';
const GROUP_KEYS = {
  primaryKey: b64('interop-mqtt-group-1-primary-012'),
  secondaryKey: b64('interop-mqtt-group-1-secondary-0'),
};
const GROUP_DEV = 'interop-mqtt-group-dev-7';
const UNKNOWN_DEV = 'interop-mqtt-no-enrollment-dev';

function checkAssigned(state, regId, what) {
  check(state && typeof state === 'object', `${what}: register() must resolve with a registrationState object`, state);
  checkEqual(state.status, 'assigned', `${what}: status`);
  checkEqual(state.registrationId, regId, `${what}: registrationId`);
  check(cfg.hubs.includes(state.assignedHub),
    `${what}: assignedHub must be one of ${cfg.hubs.join(', ')}, got ${show(state.assignedHub)}`);
  check(typeof state.deviceId === 'string' && state.deviceId.length > 0, `${what}: deviceId missing`, state);
}

async function removeQuietly(fn) {
  try { await fn(); } catch (err) { if (errStatus(err) !== 404) throw err; }
}

main(SCRIPT, async ({ step, cleanup }) => {
  const svc = createServiceClient();
  let firstGroupHub;

  try {
    await cleanup('pre-clean', async () => {
      await removeQuietly(() => svc.deleteIndividualEnrollment(IND_ID));
      await removeQuietly(() => svc.deleteEnrollmentGroup(GROUP_ID));
    });

    await step(`service SDK: create individual enrollment ${IND_ID} with known keys`, async () => {
      const res = await must(svc.createOrUpdateIndividualEnrollment({
        registrationId: IND_ID,
        attestation: { type: 'symmetricKey', symmetricKey: IND_KEYS },
        provisioningStatus: 'enabled',
      }), 'PUT /enrollments/' + IND_ID);
      checkEqual(res.responseBody.registrationId, IND_ID, 'registrationId');
    }, { critical: true });

    await step(`service SDK: create enrollment group ${GROUP_ID} with known keys`, async () => {
      const res = await must(svc.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: GROUP_ID,
        attestation: { type: 'symmetricKey', symmetricKey: GROUP_KEYS },
        provisioningStatus: 'enabled',
      }), 'PUT /enrollmentGroups/' + GROUP_ID);
      checkEqual(res.responseBody.enrollmentGroupId, GROUP_ID, 'enrollmentGroupId');
    }, { critical: true });

    await step(`MQTT: register individual device ${IND_ID} (primary key) -> assigned`, async () => {
      const state = await must(registerDeviceMqtt(IND_ID, IND_KEYS.primaryKey), 'register ' + IND_ID);
      checkAssigned(state, IND_ID, IND_ID);
      checkEqual(state.deviceId, IND_ID, 'deviceId');
      console.log(`      assigned to ${state.assignedHub} as ${state.deviceId}`);
    });

    await step(`MQTT: register individual device ${IND_ID} with its secondary key -> assigned`, async () => {
      const state = await must(registerDeviceMqtt(IND_ID, IND_KEYS.secondaryKey), 'register ' + IND_ID + ' (secondary key)');
      checkAssigned(state, IND_ID, IND_ID + ' (secondary key)');
      checkEqual(state.deviceId, IND_ID, 'deviceId');
    });

    await step(`MQTT: register group device ${GROUP_DEV} with the derived key -> assigned`, async () => {
      const key = deriveDeviceKey(GROUP_KEYS.primaryKey, GROUP_DEV);
      const state = await must(registerDeviceMqtt(GROUP_DEV, key), 'register ' + GROUP_DEV);
      checkAssigned(state, GROUP_DEV, GROUP_DEV);
      checkEqual(state.deviceId, GROUP_DEV, 'deviceId (defaults to the registration id)');
      firstGroupHub = state.assignedHub;
      console.log(`      assigned to ${state.assignedHub} as ${state.deviceId}`);
    });

    await step(`MQTT: register ${GROUP_DEV} again -> still assigned, same hub`, async () => {
      check(firstGroupHub, 'needs the first group registration');
      const key = deriveDeviceKey(GROUP_KEYS.primaryKey, GROUP_DEV);
      const state = await must(registerDeviceMqtt(GROUP_DEV, key), 're-register ' + GROUP_DEV);
      checkAssigned(state, GROUP_DEV, GROUP_DEV + ' (again)');
      checkEqual(state.assignedHub, firstGroupHub, 'assignedHub on re-registration');
    });

    await step(`MQTT: wrong key for ${IND_ID} -> rejected with 401 UnauthorizedError`, async () => {
      const wrong = b64('interop-mqtt-dev-1-WRONG-key-0123');
      const err = await expectReject(registerDeviceMqtt(IND_ID, wrong), 'register with a wrong key',
        { status: 401, name: 'UnauthorizedError' });
      const body = errBody(err);
      check(body && typeof body === 'object' && body.errorCode === 401002,
        `401 body must be JSON with errorCode 401002, got ${show(body)}`);
      console.log(`      rejected: ${describeErr(err)}`);
    });

    await step(`MQTT: group device ${GROUP_DEV} with a key derived from a wrong group key -> 401`, async () => {
      const key = deriveDeviceKey(b64('interop-mqtt-group-1-WRONG-01234'), GROUP_DEV);
      await expectReject(registerDeviceMqtt(GROUP_DEV, key), 'register group device with a wrong derived key',
        { status: 401, name: 'UnauthorizedError' });
    });

    await step(`MQTT: device ${UNKNOWN_DEV} without any enrollment -> rejected`, async () => {
      const key = b64('no-enrollment-mqtt-key-012345678');
      // Azure answers 401 here (it cannot tell "unknown" from "bad key"); 404 is also a rejection.
      const err = await expectReject(registerDeviceMqtt(UNKNOWN_DEV, key), 'register a device with no enrollment',
        { status: [401, 404] });
      console.log(`      rejected: ${describeErr(err)}`);
    });

    await step(`MQTT: the service sees ${IND_ID}'s registration record`, async () => {
      const res = await must(svc.getDeviceRegistrationState(IND_ID), 'GET /registrations/' + IND_ID);
      checkEqual(res.responseBody.registrationId, IND_ID, 'registrationId');
      checkEqual(res.responseBody.status, 'assigned', 'status');
    });
  } finally {
    await cleanup('delete enrollment ' + IND_ID, () => removeQuietly(() => svc.deleteIndividualEnrollment(IND_ID)));
    await cleanup('delete enrollment group ' + GROUP_ID, () => removeQuietly(() => svc.deleteEnrollmentGroup(GROUP_ID)));
  }
});
