// Enrollment and enrollment-group CRUD through the official Node service SDK
// (azure-iot-provisioning-service) against dpsd.
'use strict';

const {
  main, createServiceClient, randomKey, randomSuffix,
  check, checkEqual, show, expectReject, must, errStatus, describeErr,
} = require('./lib');

const SCRIPT = 'service-crud';
const B64_64_BYTES = /^[A-Za-z0-9+/]{86}==$/; // 64 random bytes -> 88 base64 chars

function checkGeneratedKey(key, what) {
  check(typeof key === 'string', `${what}: expected a generated key string, got ${show(key)}`);
  check(key.length === 88 && B64_64_BYTES.test(key),
    `${what}: expected 88-char base64 (64 bytes), got ${key.length} chars: ${show(key)}`);
  checkEqual(Buffer.from(key, 'base64').length, 64, `${what}: decoded length`);
}

function checkMasked(attestation, what) {
  check(attestation && typeof attestation === 'object', `${what}: attestation missing`, attestation);
  checkEqual(attestation.type, 'symmetricKey', `${what}: attestation.type`);
  const sk = attestation.symmetricKey;
  check(!sk || (!sk.primaryKey && !sk.secondaryKey),
    `${what}: symmetric keys must be masked on GET, got ${show(sk)}`);
}

/** Walk a service-SDK Query to the end, returning every page. */
async function walkQuery(query, what, maxPages = 1000) {
  const pages = [];
  // NB: Query.next() with *no* argument always sends no continuation token (SDK quirk:
  // the promise form only uses this.continuationToken when a callback is passed), so
  // pass the token explicitly, as a caller of 1.11.2 must.
  do {
    check(pages.length < maxPages, `${what}: more than ${maxPages} pages; continuation never ends`);
    const prevToken = query.continuationToken;
    const res = await must(query.next(query.continuationToken), `${what} page ${pages.length + 1}`);
    const page = res.responseBody;
    check(Array.isArray(page), `${what} page ${pages.length + 1}: expected a JSON array body`, page);
    pages.push({ items: page, token: query.continuationToken, headers: res.httpResponse.headers });
    if (query.hasMoreResults) {
      check(typeof query.continuationToken === 'string' && query.continuationToken.length > 0,
        `${what}: x-ms-continuation must be absent on the last page and non-empty otherwise, got ${show(query.continuationToken)}`);
      check(query.continuationToken !== prevToken || prevToken == null,
        `${what}: server returned the same continuation token twice: ${show(prevToken)}`);
    }
  } while (query.hasMoreResults);
  return pages;
}

main(SCRIPT, async ({ step, cleanup }) => {
  const svc = createServiceClient();
  const prefix = `interop-crud-${randomSuffix()}`;
  const enrId = `${prefix}-e1`;
  const queryIds = [1, 2, 3, 4, 5].map((i) => `${prefix}-q${i}`);
  const groupId = `${prefix}-g1`;
  const groupKeys = { primaryKey: randomKey(), secondaryKey: randomKey() };

  let created; // PUT response of enrId
  let got; // first GET of enrId
  let updated; // PUT response of the If-Match update
  let group; // GET of groupId

  try {
    // -- individual enrollment ------------------------------------------------
    await step('create individual enrollment without keys -> keys generated', async () => {
      const enrollment = {
        registrationId: enrId,
        deviceId: enrId,
        attestation: { type: 'symmetricKey' },
        provisioningStatus: 'enabled',
        capabilities: { iotEdge: false },
        initialTwin: { tags: { acceptance: 'interop' }, properties: { desired: { interval: 30 } } },
      };
      const res = await must(svc.createOrUpdateIndividualEnrollment(enrollment), 'PUT /enrollments/' + enrId);
      created = res.responseBody;
      check(created && typeof created === 'object',
        'PUT response must be a JSON object (Content-Type application/json)', created);
      checkEqual(res.httpResponse.statusCode, 200, 'PUT status');
      checkEqual(created.registrationId, enrId, 'registrationId');
      checkEqual(created.attestation && created.attestation.type, 'symmetricKey', 'attestation.type');
      const sk = created.attestation.symmetricKey || {};
      checkGeneratedKey(sk.primaryKey, 'generated primaryKey');
      checkGeneratedKey(sk.secondaryKey, 'generated secondaryKey');
      check(sk.primaryKey !== sk.secondaryKey, 'primary and secondary keys must differ');
      check(typeof created.etag === 'string' && created.etag.length > 0, 'PUT response must carry an etag', created.etag);
      checkEqual(created.provisioningStatus, 'enabled', 'provisioningStatus');
    }, { critical: true });

    await step('create again without etag -> 409 Conflict', async () => {
      await expectReject(svc.createOrUpdateIndividualEnrollment({
        registrationId: enrId,
        attestation: { type: 'symmetricKey' },
        provisioningStatus: 'enabled',
      }), 'second PUT without If-Match', { status: 409, name: 'DeviceAlreadyExistsError' });
    });

    await step('GET individual enrollment -> keys masked, fields round-trip', async () => {
      const res = await must(svc.getIndividualEnrollment(enrId), 'GET /enrollments/' + enrId);
      got = res.responseBody;
      check(got && typeof got === 'object', 'GET response must be a JSON object', got);
      checkEqual(got.registrationId, enrId, 'registrationId');
      checkEqual(got.deviceId, enrId, 'deviceId');
      checkEqual(got.provisioningStatus, 'enabled', 'provisioningStatus');
      checkMasked(got.attestation, 'GET');
      checkEqual(got.etag, created.etag, 'etag (unchanged by the rejected 409 PUT)');
      check(got.initialTwin && got.initialTwin.tags && got.initialTwin.tags.acceptance === 'interop',
        'initialTwin.tags must round-trip', got.initialTwin);
      check(typeof got.createdDateTimeUtc === 'string', 'createdDateTimeUtc must be present', got);
    });

    await step('getIndividualEnrollmentAttestationMechanism returns the generated keys', async () => {
      const res = await must(svc.getIndividualEnrollmentAttestationMechanism(enrId),
        'POST /enrollments/' + enrId + '/attestationmechanism');
      const att = res.responseBody;
      check(att && typeof att === 'object', 'attestationmechanism response must be a JSON object', att);
      checkEqual(att.type, 'symmetricKey', 'type');
      check(att.symmetricKey, 'symmetricKey missing', att);
      checkEqual(att.symmetricKey.primaryKey, created.attestation.symmetricKey.primaryKey, 'primaryKey');
      checkEqual(att.symmetricKey.secondaryKey, created.attestation.symmetricKey.secondaryKey, 'secondaryKey');
    });

    await step('update via GET -> modify -> createOrUpdate (If-Match) -> etag changes, keys kept', async () => {
      check(got, 'no GET result to update');
      const modified = JSON.parse(JSON.stringify(got)); // carries etag -> SDK sends If-Match
      modified.provisioningStatus = 'disabled';
      const res = await must(svc.createOrUpdateIndividualEnrollment(modified), 'PUT with If-Match');
      updated = res.responseBody;
      checkEqual(updated.provisioningStatus, 'disabled', 'provisioningStatus after update');
      check(typeof updated.etag === 'string' && updated.etag.length > 0, 'update response must carry an etag', updated);
      check(updated.etag !== got.etag, `etag must change on update (was ${got.etag}, still ${updated.etag})`);
      const again = (await must(svc.getIndividualEnrollment(enrId), 'GET after update')).responseBody;
      checkEqual(again.provisioningStatus, 'disabled', 'provisioningStatus on GET after update');
      checkEqual(again.etag, updated.etag, 'etag on GET after update');
      // The update PUT carried the masked attestation ({"type":"symmetricKey"}) from GET:
      // it must not rotate or drop the keys.
      const att = (await must(svc.getIndividualEnrollmentAttestationMechanism(enrId), 'attestationmechanism after update')).responseBody;
      check(att && att.symmetricKey, 'attestationmechanism after update: symmetricKey missing', att);
      checkEqual(att.symmetricKey.primaryKey, created.attestation.symmetricKey.primaryKey,
        'primaryKey after a GET->PUT round trip with masked keys');
      checkEqual(att.symmetricKey.secondaryKey, created.attestation.symmetricKey.secondaryKey,
        'secondaryKey after a GET->PUT round trip with masked keys');
    });

    await step('update with a stale etag -> 412 Precondition Failed', async () => {
      check(got && updated, 'needs the earlier GET and update');
      const stale = JSON.parse(JSON.stringify(got)); // etag from before the update
      stale.provisioningStatus = 'enabled';
      await expectReject(svc.createOrUpdateIndividualEnrollment(stale), 'PUT with stale If-Match',
        { status: 412, name: 'InvalidEtagError' });
      const again = (await must(svc.getIndividualEnrollment(enrId), 'GET after stale PUT')).responseBody;
      checkEqual(again.provisioningStatus, 'disabled', 'provisioningStatus after the rejected stale PUT');
      checkEqual(again.etag, updated.etag, 'etag after the rejected stale PUT');
    });

    await step('delete with a stale etag -> 412', async () => {
      check(got, 'needs the earlier GET');
      await expectReject(svc.deleteIndividualEnrollment(enrId, got.etag), 'DELETE with stale If-Match',
        { status: 412, name: 'InvalidEtagError' });
      await must(svc.getIndividualEnrollment(enrId), 'GET after rejected DELETE (must still exist)');
    });

    // -- query with paging ----------------------------------------------------
    await step('create 5 more enrollments for the query', async () => {
      for (const [i, id] of queryIds.entries()) {
        // q1 uses an explicit empty symmetricKey object, the rest omit it
        const attestation = i === 0 ? { type: 'symmetricKey', symmetricKey: {} } : { type: 'symmetricKey' };
        const res = await must(svc.createOrUpdateIndividualEnrollment({
          registrationId: id, attestation, provisioningStatus: 'enabled',
        }), 'PUT /enrollments/' + id);
        checkEqual(res.responseBody.registrationId, id, 'registrationId');
        checkGeneratedKey(res.responseBody.attestation.symmetricKey.primaryKey, id + ' primaryKey');
      }
    });

    await step('query enrollments, page size 2, follow x-ms-continuation to the end', async () => {
      const query = svc.createIndividualEnrollmentQuery({ query: '*' }, 2);
      const pages = await walkQuery(query, 'enrollment query');
      const seen = new Map();
      for (const [n, p] of pages.entries()) {
        check(p.items.length <= 2, `page ${n + 1} has ${p.items.length} items, x-ms-max-item-count was 2`);
        for (const e of p.items) seen.set(e.registrationId, (seen.get(e.registrationId) || 0) + 1);
      }
      const dup = [...seen].filter(([, c]) => c > 1);
      check(dup.length === 0, 'ids returned more than once across pages', dup);
      for (const id of [enrId, ...queryIds]) {
        checkEqual(seen.get(id), 1, `times ${id} was seen`);
      }
      check(pages.length >= 3, `expected >= 3 pages for >= 6 enrollments at page size 2, got ${pages.length}`);
      console.log(`      ${pages.length} pages, ${seen.size} enrollments (page sizes ${pages.map((p) => p.items.length).join(',')})`);
    });

    // -- enrollment group ------------------------------------------------------
    await step('create enrollment group with explicit symmetric keys', async () => {
      const res = await must(svc.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: groupId,
        attestation: { type: 'symmetricKey', symmetricKey: groupKeys },
        provisioningStatus: 'enabled',
      }), 'PUT /enrollmentGroups/' + groupId);
      const g = res.responseBody;
      check(g && typeof g === 'object', 'group PUT response must be a JSON object', g);
      checkEqual(g.enrollmentGroupId, groupId, 'enrollmentGroupId');
      checkEqual(g.attestation && g.attestation.type, 'symmetricKey', 'attestation.type');
      const sk = g.attestation.symmetricKey;
      if (sk && sk.primaryKey) {
        checkEqual(sk.primaryKey, groupKeys.primaryKey, 'group primaryKey in PUT response');
        checkEqual(sk.secondaryKey, groupKeys.secondaryKey, 'group secondaryKey in PUT response');
      }
      check(typeof g.etag === 'string' && g.etag.length > 0, 'group PUT response must carry an etag', g);
    }, { critical: true });

    await step('create enrollment group again without etag -> 409', async () => {
      await expectReject(svc.createOrUpdateEnrollmentGroup({
        enrollmentGroupId: groupId,
        attestation: { type: 'symmetricKey', symmetricKey: { primaryKey: randomKey(), secondaryKey: randomKey() } },
        provisioningStatus: 'enabled',
      }), 'second group PUT without If-Match', { status: 409 });
    });

    await step('GET enrollment group reads it back', async () => {
      group = (await must(svc.getEnrollmentGroup(groupId), 'GET /enrollmentGroups/' + groupId)).responseBody;
      checkEqual(group.enrollmentGroupId, groupId, 'enrollmentGroupId');
      checkEqual(group.provisioningStatus, 'enabled', 'provisioningStatus');
      checkEqual(group.attestation && group.attestation.type, 'symmetricKey', 'attestation.type');
      const sk = group.attestation.symmetricKey;
      if (sk && (sk.primaryKey || sk.secondaryKey)) {
        // dpsd masks keys on GET; if it ever returns them, they must at least be right
        checkEqual(sk.primaryKey, groupKeys.primaryKey, 'group primaryKey on GET');
        checkEqual(sk.secondaryKey, groupKeys.secondaryKey, 'group secondaryKey on GET');
      }
    });

    await step('getEnrollmentGroupAttestationMechanism returns the explicit keys', async () => {
      const att = (await must(svc.getEnrollmentGroupAttestationMechanism(groupId),
        'POST /enrollmentgroups/' + groupId + '/attestationmechanism')).responseBody;
      check(att && att.symmetricKey, 'symmetricKey missing', att);
      checkEqual(att.type, 'symmetricKey', 'type');
      checkEqual(att.symmetricKey.primaryKey, groupKeys.primaryKey, 'group primaryKey');
      checkEqual(att.symmetricKey.secondaryKey, groupKeys.secondaryKey, 'group secondaryKey');
    });

    await step('query enrollment groups (page size 2, follow continuation)', async () => {
      const pages = await walkQuery(svc.createEnrollmentGroupQuery({ query: '*' }, 2), 'group query');
      const ids = pages.flatMap((p) => p.items.map((g) => g.enrollmentGroupId));
      for (const [n, p] of pages.entries()) {
        check(p.items.length <= 2, `group page ${n + 1} has ${p.items.length} items, x-ms-max-item-count was 2`);
      }
      checkEqual(ids.filter((x) => x === groupId).length, 1, `times ${groupId} was seen`);
      check(new Set(ids).size === ids.length, 'group ids returned more than once', ids);
      check(!ids.includes(undefined), 'every group query item must carry enrollmentGroupId', pages);
    });

    // -- delete ------------------------------------------------------------------
    await step('delete individual enrollment with If-Match etag -> 204', async () => {
      const cur = (await must(svc.getIndividualEnrollment(enrId), 'GET before delete')).responseBody;
      await must(svc.deleteIndividualEnrollment(enrId, cur.etag), 'DELETE /enrollments/' + enrId + ' (If-Match)');
    });

    await step('delete the query enrollments without etag (by id and by object)', async () => {
      for (const [i, id] of queryIds.entries()) {
        if (i === 0) {
          await must(svc.deleteIndividualEnrollment({ registrationId: id }), 'DELETE (object, no etag) ' + id);
        } else {
          await must(svc.deleteIndividualEnrollment(id), 'DELETE ' + id);
        }
      }
    });

    await step('delete enrollment group (object carrying its etag)', async () => {
      check(group, 'needs the group GET');
      await must(svc.deleteEnrollmentGroup(group), 'DELETE /enrollmentGroups/' + groupId + ' (If-Match)');
    });

    await step('GET deleted enrollments and group -> 404', async () => {
      for (const id of [enrId, ...queryIds]) {
        await expectReject(svc.getIndividualEnrollment(id), 'GET deleted enrollment ' + id, { status: 404 });
      }
      await expectReject(svc.getEnrollmentGroup(groupId), 'GET deleted group ' + groupId, { status: 404 });
    });

    await step('query after delete no longer returns the deleted ids', async () => {
      const pages = await walkQuery(svc.createIndividualEnrollmentQuery({ query: '*' }, 2), 'enrollment query after delete');
      const ids = pages.flatMap((p) => p.items.map((e) => e.registrationId));
      const left = [enrId, ...queryIds].filter((id) => ids.includes(id));
      check(left.length === 0, 'deleted enrollments still returned by query', left);
    });
  } finally {
    // Best effort: remove anything a failed step left behind (404 = already gone).
    for (const id of [enrId, ...queryIds]) {
      try {
        await svc.deleteIndividualEnrollment(id);
        console.log(`  cleanup: deleted leftover enrollment ${id}`);
      } catch (err) {
        if (errStatus(err) !== 404) console.log(`  cleanup: enrollment ${id}: ${describeErr(err)}`);
      }
    }
    await cleanup('enrollment group ' + groupId, async () => {
      try { await svc.deleteEnrollmentGroup(groupId); } catch (err) { if (errStatus(err) !== 404) throw err; }
    });
  }
});
