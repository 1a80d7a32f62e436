import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';

/**
 * A local HTTPS server standing in for Azure Resource Manager. The SDK
 * insists on https for bearer tokens, so it serves a throwaway self-signed
 * certificate (made with the real openssl) that the client trusts through an
 * https.Agent with that CA: no NODE_TLS_REJECT_UNAUTHORIZED, the SDK's real
 * HTTP pipeline end to end. Tests register routes; any request no route
 * answers is recorded in `unmatched` and gets 418 (not retried by the SDK).
 */

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** Bytes sent as they are (a blob), instead of a JSON body. */
  raw?: Buffer;
}

type Handler = (req: RecordedRequest, arm: ArmStandIn) => Reply;

export function notFound(what: string): Reply {
  return { status: 404, body: { error: { code: 'ResourceNotFound', message: `The Resource '${what}' under resource group 'rg-ehr' was not found.` } } };
}

export class ArmStandIn {
  readonly requests: RecordedRequest[] = [];
  readonly unmatched: RecordedRequest[] = [];
  #routes: { method: string; path: RegExp; handler: Handler }[] = [];
  #server: https.Server | undefined;
  #dir = '';
  ca = '';
  baseUrl = '';

  async start(): Promise<void> {
    this.#dir = mkdtempSync(path.join(os.tmpdir(), 'rubicon-arm-'));
    const key = path.join(this.#dir, 'key.pem');
    const cert = path.join(this.#dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
    this.ca = readFileSync(cert, 'utf8');
    this.#server = https.createServer({ key: readFileSync(key), cert: this.ca }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'https://127.0.0.1');
        const text = Buffer.concat(chunks).toString('utf8');
        const rec: RecordedRequest = { method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
        this.requests.push(rec);
        const route = this.#routes.find((r) => r.method === rec.method && r.path.test(rec.path));
        let reply: Reply;
        if (!route) {
          this.unmatched.push(rec);
          reply = { status: 418, body: { error: { code: 'NoRoute', message: `stand-in has no route for ${rec.method} ${rec.path}` } } };
        } else {
          reply = route.handler(rec, this);
        }
        const payload = reply.raw ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
        res.writeHead(reply.status, { ...(payload && !reply.raw ? { 'content-type': 'application/json; charset=utf-8' } : {}), 'x-ms-request-id': 'stand-in', ...reply.headers });
        res.end(payload);
      });
    });
    await new Promise<void>((resolve) => this.#server!.listen(0, '127.0.0.1', resolve));
    this.baseUrl = `https://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server?.closeAllConnections();
    rmSync(this.#dir, { recursive: true, force: true });
  }

  /** An agent that trusts only the stand-in's certificate. */
  agent(): https.Agent {
    return new https.Agent({ ca: this.ca, keepAlive: false });
  }

  reset(): void {
    this.requests.length = 0;
    this.unmatched.length = 0;
    this.#routes = [];
  }

  on(method: string, pathPattern: RegExp, handler: Handler): this {
    this.#routes.push({ method, path: pathPattern, handler });
    return this;
  }

  /** Requests with this method whose path matches. */
  made(method: string, pathPattern: RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && pathPattern.test(r.path));
  }
}
