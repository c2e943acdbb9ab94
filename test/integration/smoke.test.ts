import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TenantStatus } from '../../src/gen/shardgate/v1/tenant.js';
import {
  createTestTopology,
  freshClientId,
  startTestGateway,
  type TestGateway,
} from '../support/harness.js';

describe('smoke', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(await createTestTopology());
  });
  afterAll(async () => gw?.close());

  it('creates a tenant and reads its state', async () => {
    const clientId = freshClientId('smoke');
    const { tenant, created } = await gw.client.tenants.createTenant({ clientId });
    expect(created).toBe(true);
    expect(tenant?.status).toBe(TenantStatus.TENANT_STATUS_ACTIVE);
    const { state } = await gw.client.state.getState({ clientId });
    expect(state?.version).toBe(0);
    expect(state?.document).toEqual({});
  });
});
