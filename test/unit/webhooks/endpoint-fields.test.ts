import fc from 'fast-check';
import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import { addressOf, isPublicAddress } from '../../../src/webhooks/destination.js';
import { endpointFields } from '../../../src/webhooks/endpoints.js';
import { WEBHOOK_EVENTS } from '../../../src/webhooks/events.js';

const url = fc.oneof(
  fc.webUrl({
    validSchemes: ['https', 'http', 'ftp', 'javascript', 'file'],
    withQueryParameters: true,
    withFragments: true,
    authoritySettings: { withUserInfo: true, withIPv4: true, withIPv6: true, withPort: true },
  }),
  fc.webUrl({ validSchemes: ['https'], withQueryParameters: true }),
  fc.string(),
  fc.constantFrom('https://10.0.0.1/', 'https://[::ffff:a00:1]/', 'https://0x7f000001/', 'https://2130706433/', 'https://127.1/', 'https://[fe80::1%25eth0]/'),
);
const events = fc.oneof(
  fc.subarray([...WEBHOOK_EVENTS], { minLength: 1 }),
  fc.array(fc.oneof(fc.constantFrom(...WEBHOOK_EVENTS), fc.string()), { maxLength: 6 }),
);

describe('what an endpoint may be', () => {
  it('takes only https URLs without credentials or fragments to public addresses, and known events; refuses the rest with BAD_USER_INPUT', () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(url, events, (text, names) => {
        let fields: ReturnType<typeof endpointFields>;
        try {
          fields = endpointFields({ url: text, events: names }, { allowPrivate: false });
        } catch (error) {
          expect(error).toBeInstanceOf(GraphQLError);
          expect((error as GraphQLError).extensions.code).toBe('BAD_USER_INPUT');
          refused++;
          return;
        }
        const parsed = new URL(fields.url!);
        expect(parsed.protocol).toBe('https:');
        expect(parsed.username + parsed.password).toBe('');
        expect(parsed.hash).toBe('');
        // WHATWG parsing turns 0x7f000001, 2130706433 and 127.1 into 127.0.0.1: what is checked is what is connected to.
        const literal = addressOf(parsed.hostname);
        if (literal) expect(isPublicAddress(literal), literal).toBe(true);
        expect(fields.events!.length).toBeGreaterThan(0);
        for (const name of fields.events!) expect(WEBHOOK_EVENTS).toContain(name);
        expect(new Set(fields.events).size).toBe(fields.events!.length);
        accepted++;
      }),
      { numRuns: 3_000 },
    );
    // Both sides were reached: the property says something about each.
    expect(accepted).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(100);
  });
});
