import { expect } from 'chai';
import { foreignHost, foreignOrigin } from '../../src/transports/origin.js';

describe('foreignOrigin (the one cross-origin rule)', () => {
  const none = new Set<string>();
  const refused = (origin: string, host: string, pagePorts: number[] = [], allowed = none): boolean =>
    foreignOrigin({ origin, host }, allowed, pagePorts) !== undefined;

  it('lets a request without Origin through', () => {
    expect(foreignOrigin({ host: '127.0.0.1:8082' }, none)).to.equal(undefined);
  });

  it('accepts the page of the very host and port the request was sent to, by address only', () => {
    expect(refused('http://127.0.0.1:8082', '127.0.0.1:8082')).to.equal(false);
    expect(refused('http://localhost:8082', 'localhost:8082')).to.equal(false);
    expect(refused('http://evil.example:8082', 'evil.example:8082'), 'DNS rebinding').to.equal(true);
  });

  it("accepts the server's own pages on another of its ports (the playground opening the WebSocket)", () => {
    expect(refused('http://127.0.0.1:8082', '127.0.0.1:8083')).to.equal(true);
    expect(refused('http://127.0.0.1:8082', '127.0.0.1:8083', [8082])).to.equal(false);
    expect(refused('http://127.0.0.1:3000', '127.0.0.1:8083', [8082]), 'another local site').to.equal(true);
    expect(refused('http://10.0.0.9:8082', '127.0.0.1:8083', [8082]), 'another host').to.equal(true);
    expect(refused('http://evil.example:8082', 'evil.example:8083', [8082]), 'DNS rebinding').to.equal(true);
  });

  it('accepts the origins the operator lists', () => {
    expect(refused('https://app.example', '127.0.0.1:8082', [], new Set(['https://app.example']))).to.equal(false);
    expect(refused('https://other.example', '127.0.0.1:8082', [], new Set(['https://app.example']))).to.equal(true);
  });

  it("MCP's extra guard: a Host that does not name loopback is refused, with or without Origin", () => {
    expect(foreignHost({ host: 'evil.example:8082' })?.name).to.equal('FORBIDDEN');
    for (const host of ['127.0.0.1:8082', 'localhost:8082', '[::1]:8082']) expect(foreignHost({ host }), host).to.equal(undefined);
  });
});
