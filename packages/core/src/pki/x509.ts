// reflect-metadata must load before @peculiar/x509 (its ASN.1 schemas use decorators metadata).
import 'reflect-metadata';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  randomBytes,
  sign,
  webcrypto,
  X509Certificate,
} from 'node:crypto';
import * as px from '@peculiar/x509';
import { GatehouseError } from '../errors.js';
import type { Identity } from '../identity/types.js';
import { ipBytes } from '../util/ip.js';
import {
  BOOLEAN_TRUE,
  bitString,
  children,
  DerError,
  decodeOid,
  decodeTime,
  derToPem,
  explicit,
  octetString,
  oid,
  pemToDer,
  readOnly,
  seq,
  set,
  type Tlv,
  time,
  tlv,
  uintBytes,
  uintSmall,
  utf8String,
} from './der.js';
import { decodeIdentityJson, encodeIdentityJson } from './identity-codec.js';
import type {
  X509DbClientCertRequest,
  X509GatewayCertRequest,
  X509ServerCertRequest,
  X509UserCertRequest,
} from './types.js';

/**
 * OID of the Gatehouse identity extension, derived once from the random UUID
 * b63fbed2-1946-41b2-b89e-18c8316e3e92 under Microsoft's arc for UUID-based
 * OIDs (1.2.840.113556.1.8000.2554 + the UUID as 16,16,16,16,16,24,24-bit
 * arcs). Not 2.25.<UUID>: Go's crypto/x509 rejects any certificate with an
 * OID arc of 2^31 or more ("x509: malformed extension OID field", seen with
 * kubectl 1.32), see docs/decisions/0002. Never change it casually:
 * certificates in the field carry it.
 */
export const IDENTITY_EXTENSION_OID =
  '1.2.840.113556.1.8000.2554.46655.48850.6470.16818.47262.1624113.7224978';

const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
} as const;

// Constant DER fragments, encoded once: they are the same in every leaf.
const VERSION_V3 = explicit(0, uintSmall(2));
const SIG_ALG_ECDSA_SHA256 = seq(oid(OID.ecdsaWithSha256));
const EXT_NOT_CA = seq(oid(OID.basicConstraints), BOOLEAN_TRUE, octetString(seq()));
// keyUsage digitalSignature only: BIT STRING with 7 unused bits, first bit set.
const EXT_KU_DIGITAL_SIGNATURE = seq(
  oid(OID.keyUsage),
  BOOLEAN_TRUE,
  octetString(Buffer.from([0x03, 0x02, 0x07, 0x80])),
);
const EXT_EKU_CLIENT = seq(oid(OID.extKeyUsage), octetString(seq(oid(OID.clientAuth))));
const EXT_EKU_SERVER = seq(oid(OID.extKeyUsage), octetString(seq(oid(OID.serverAuth))));
const OID_IDENTITY = oid(IDENTITY_EXTENSION_OID);
const EXT_EKU_SERVER_CLIENT = seq(
  oid(OID.extKeyUsage),
  octetString(seq(oid(OID.serverAuth), oid(OID.clientAuth))),
);

function certInvalid(message: string, cause?: unknown): GatehouseError {
  return new GatehouseError('GH_ERR_CERT_INVALID', message, {
    hint: 'Log in again to get a fresh certificate; if this persists, it was not issued by this Gatehouse.',
    ...(cause === undefined ? {} : { cause }),
  });
}

/** 16 random bytes, high bit clear (positive) and second-highest set (no leading zero: fixed DER length). */
export function randomSerial(): Buffer {
  const b = randomBytes(16);
  b[0] = ((b[0] as number) & 0x7f) | 0x40;
  return b;
}

function rdn(type: string, value: string): Buffer {
  return set(seq(oid(type), utf8String(value)));
}

/** A Name with one RDN per attribute, in the given order. */
export function encodeName(attrs: readonly (readonly [type: 'CN' | 'O', value: string])[]): Buffer {
  return seq(...attrs.map(([t, v]) => rdn(t === 'CN' ? OID.commonName : OID.organization, v)));
}

// ---------------------------------------------------------------- parsing

export interface X509Extension {
  oid: string;
  critical: boolean;
  /** extnValue contents (the DER of the extension's own value). */
  value: Uint8Array;
}

export interface X509Parts {
  der: Uint8Array;
  tbs: Tlv;
  serial: Uint8Array;
  issuer: Tlv;
  subject: Tlv;
  notBefore: Date;
  notAfter: Date;
  spki: Tlv;
  extensions: X509Extension[];
}

/** Splits a DER certificate into the parts Gatehouse reads. Structure only: no signature check. */
export function parseX509(der: Uint8Array): X509Parts {
  try {
    const cert = readOnly(der, 0x30);
    const [tbs] = children(cert.value);
    if (tbs?.tag !== 0x30) throw new DerError('missing TBSCertificate');
    const f = children(tbs.value);
    let i = f[0]?.tag === 0xa0 ? 1 : 0;
    const next = (tag: number): Tlv => {
      const t = f[i++];
      if (!t || t.tag !== tag) throw new DerError(`unexpected TBSCertificate field ${t?.tag}`);
      return t;
    };
    const serial = next(0x02);
    next(0x30);
    const issuer = next(0x30);
    const validity = children(next(0x30).value);
    const subject = next(0x30);
    const spki = next(0x30);
    const [nb, na] = validity;
    if (!nb || !na) throw new DerError('validity needs two times');
    const extensions: X509Extension[] = [];
    for (const t of f.slice(i)) {
      if (t.tag !== 0xa3) continue;
      for (const ext of children(readOnly(t.value, 0x30).value)) {
        const parts = children(ext.value);
        const id = parts[0];
        const crit = parts.length === 3 ? parts[1] : undefined;
        const val = parts[parts.length - 1];
        if (id?.tag !== 0x06 || !val || val.tag !== 0x04 || parts.length < 2 || parts.length > 3) {
          throw new DerError('malformed extension');
        }
        if (crit && (crit.tag !== 0x01 || crit.value.length !== 1))
          throw new DerError('malformed critical flag');
        extensions.push({ oid: decodeOid(id.value), critical: crit?.value[0] === 0xff, value: val.value });
      }
    }
    return {
      der,
      tbs,
      serial: serial.value,
      issuer,
      subject,
      notBefore: decodeTime(nb.tag, nb.value),
      notAfter: decodeTime(na.tag, na.value),
      spki,
      extensions,
    };
  } catch (cause) {
    if (cause instanceof GatehouseError) throw cause;
    throw certInvalid('certificate is not valid DER', cause);
  }
}

/** The values of one attribute type in a Name, in order. */
export function nameValues(name: Tlv, attrOid: string): string[] {
  const out: string[] = [];
  for (const r of children(name.value)) {
    for (const atv of children(r.value)) {
      const [type, value] = children(atv.value);
      if (type && value && decodeOid(type.value) === attrOid)
        out.push(Buffer.from(value.value).toString('utf8'));
    }
  }
  return out;
}

/** Subject CN values; a damaged Name is an invalid certificate like any other bad DER. */
function commonNames(parts: X509Parts): string[] {
  try {
    return nameValues(parts.subject, OID.commonName);
  } catch (cause) {
    throw certInvalid('certificate subject is not valid DER', cause);
  }
}

function toDer(cert: X509Certificate | string | Uint8Array): Uint8Array {
  if (cert instanceof X509Certificate) return cert.raw;
  if (typeof cert === 'string') {
    try {
      return pemToDer(cert, 'CERTIFICATE');
    } catch (cause) {
      throw certInvalid('not a PEM certificate', cause);
    }
  }
  return cert;
}

// ---------------------------------------------------------------- identity extension

/** The extension value: a DER UTF8String holding the identity JSON. */
export function encodeIdentityExtension(identity: Identity): Buffer {
  return utf8String(encodeIdentityJson(identity));
}

/**
 * Reads the Gatehouse identity from a user certificate (does NOT verify the
 * signature: do that first, e.g. in the TLS handshake). Strict: a missing or
 * repeated extension, a subject CN that differs from the identity's user, or
 * JSON not matching the current version is an error. `expires` is the earlier
 * of the identity's expiry and the certificate's notAfter.
 */
export function decodeIdentity(cert: X509Certificate | string | Uint8Array): Identity {
  const parts = parseX509(toDer(cert));
  const found = parts.extensions.filter((e) => e.oid === IDENTITY_EXTENSION_OID);
  if (found.length !== 1) {
    throw certInvalid(
      found.length === 0 ? 'certificate carries no Gatehouse identity' : 'certificate carries two identities',
    );
  }
  let json: string;
  try {
    const s = readOnly((found[0] as X509Extension).value, 0x0c);
    json = Buffer.from(s.value).toString('utf8');
  } catch (cause) {
    throw certInvalid('Gatehouse identity extension is not a UTF8String', cause);
  }
  const identity = decodeIdentityJson(json);
  const cns = commonNames(parts);
  if (cns.length !== 1 || cns[0] !== identity.user) {
    throw certInvalid(`certificate subject CN does not match identity user "${identity.user}"`);
  }
  if (parts.notAfter < identity.expires) identity.expires = parts.notAfter;
  return identity;
}

// ---------------------------------------------------------------- keys

/** SHA-256 of the certificate's SubjectPublicKeyInfo DER, as `sha256:<hex>` (what `--ca-pin` checks). */
export function spkiPin(certPem: string | Uint8Array | X509Certificate): string {
  const parts = parseX509(toDer(certPem));
  return `sha256:${createHash('sha256').update(parts.spki.bytes).digest('hex')}`;
}

// P-256 curve parameters (SEC 2), for checking client points without
// OpenSSL's key decoder, which costs more than the certificate's signature.
const P256_P = 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn;
const P256_B = 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn;
const P256_ALG = seq(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7'));

const mod = (a: bigint, m: bigint) => ((a % m) + m) % m;

/** The canonical P-256 SPKI when `der` is one with a valid uncompressed point; undefined for other keys. */
function p256Spki(der: Uint8Array): Buffer | undefined {
  let point: Uint8Array;
  try {
    const [alg, bits, extra] = children(readOnly(der, 0x30).value);
    if (!alg || !bits || extra || !Buffer.from(alg.bytes).equals(P256_ALG) || bits.tag !== 0x03)
      return undefined;
    point = bits.value;
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'public key is not valid DER', {
      cause,
      hint: 'Pass an SPKI PEM ("-----BEGIN PUBLIC KEY-----"), e.g. from `openssl pkey -pubout`.',
    });
  }
  if (point.length !== 66 || point[0] !== 0 || point[1] !== 0x04) return undefined;
  const x = BigInt(`0x${Buffer.from(point.subarray(2, 34)).toString('hex')}`);
  const y = BigInt(`0x${Buffer.from(point.subarray(34, 66)).toString('hex')}`);
  if (x >= P256_P || y >= P256_P || mod(y * y - (x * x * x - 3n * x + P256_B), P256_P) !== 0n) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'public key is not a point on the P-256 curve', {
      hint: 'Generate a new key; this one is corrupt.',
    });
  }
  return seq(P256_ALG, bitString(point.subarray(1)));
}

/** Canonical SPKI DER of a client's public key; only keys TLS peers widely accept. */
export function leafSpki(publicKeyPem: string): Buffer {
  const der = /^\s*-----BEGIN PUBLIC KEY-----/.test(publicKeyPem)
    ? pemToDer(publicKeyPem, 'PUBLIC KEY')
    : undefined;
  const fast = der && p256Spki(der);
  if (fast) return fast;
  let key: KeyObject;
  try {
    key = createPublicKey(publicKeyPem);
  } catch (cause) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'public key is not a valid PEM public key', {
      cause,
      hint: 'Pass an SPKI PEM ("-----BEGIN PUBLIC KEY-----"), e.g. from `openssl pkey -pubout`.',
    });
  }
  const t = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const rsaBits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  const ok =
    (t === 'ec' && (curve === 'prime256v1' || curve === 'secp384r1')) || (t === 'rsa' && rsaBits >= 2048);
  if (!ok) {
    throw new GatehouseError(
      'GH_ERR_VALIDATION',
      `unsupported TLS key type ${t}${curve ? ` (${curve})` : ''}`,
      {
        hint: 'Use an ECDSA P-256 key (openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256).',
      },
    );
  }
  return key.export({ type: 'spki', format: 'der' });
}

/** SubjectKeyIdentifier method 1 of RFC 5280: SHA-1 of the subjectPublicKey bits. */
function keyIdFromSpki(spki: Tlv): Buffer {
  const [, bits] = children(spki.value);
  if (bits?.tag !== 0x03) throw new DerError('SPKI has no BIT STRING');
  return createHash('sha1').update(bits.value.subarray(1)).digest();
}

// ---------------------------------------------------------------- CA certificates

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

// Named through @peculiar/x509's own signatures: this project compiles without DOM lib types.
type SelfSignedParams = Parameters<typeof px.X509CertificateGenerator.createSelfSigned>[0];
type PxCrypto = NonNullable<Parameters<typeof px.X509CertificateGenerator.createSelfSigned>[1]>;

export interface X509CaMaterial {
  certPem: string;
  /** PKCS#8 PEM. */
  privateKeyPem: string;
}

/**
 * A new ECDSA P-256 CA key and its self-signed certificate
 * (subject `CN=<commonName>, O=<organization>`). Uses node's WebCrypto
 * explicitly, so no global crypto provider is set.
 */
export async function createX509Ca(opts: {
  commonName: string;
  organization: string;
  notBefore: Date;
  notAfter: Date;
}): Promise<X509CaMaterial> {
  const crypto = webcrypto as unknown as PxCrypto;
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, [
    'sign',
    'verify',
  ])) as unknown as SelfSignedParams['keys'];
  const cert = await px.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial().toString('hex'),
      name: [{ [OID.commonName]: [opts.commonName] }, { [OID.organization]: [opts.organization] }],
      notBefore: opts.notBefore,
      notAfter: opts.notAfter,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } as SelfSignedParams['signingAlgorithm'],
      keys,
      extensions: [
        new px.BasicConstraintsExtension(true, undefined, true),
        new px.KeyUsagesExtension(px.KeyUsageFlags.keyCertSign | px.KeyUsageFlags.cRLSign, true),
        await px.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
  const pkcs8 = await crypto.subtle.exportKey('pkcs8', keys.privateKey);
  return { certPem: cert.toString('pem'), privateKeyPem: derToPem(new Uint8Array(pkcs8), 'PRIVATE KEY') };
}

// ---------------------------------------------------------------- leaf certificates

export interface IssuedX509 {
  pem: string;
  der: Buffer;
  /** Serial as lowercase hex. */
  serial: string;
}

interface LeafParams {
  subject: Buffer;
  spki: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  extensions: Buffer[];
}

function checkWindow(notBefore: Date, notAfter: Date): void {
  if (!(notAfter.getTime() > notBefore.getTime())) {
    throw new GatehouseError('GH_ERR_VALIDATION', 'certificate notAfter must be after notBefore');
  }
}

/**
 * Signs leaf certificates with one ECDSA P-256 CA key. Builds the
 * TBSCertificate from pre-encoded constant parts and signs with node:crypto
 * (DER-encoded ECDSA signature, as X.509 requires).
 */
export class X509Issuer {
  readonly caCertPem: string;
  readonly #key: KeyObject;
  readonly #issuerName: Buffer;
  readonly #akiExt: Buffer;

  constructor(caCertPem: string, caPrivateKey: KeyObject | string) {
    this.caCertPem = caCertPem;
    this.#key = typeof caPrivateKey === 'string' ? createPrivateKey(caPrivateKey) : caPrivateKey;
    if (this.#key.asymmetricKeyType !== 'ec' || this.#key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new GatehouseError('GH_ERR_INTERNAL', 'X.509 CA keys must be ECDSA P-256');
    }
    const parts = parseX509(pemToDer(caCertPem, 'CERTIFICATE'));
    // Leaves name their issuer with the CA's subject bytes verbatim, so
    // chain building never depends on re-encoding a Name identically.
    this.#issuerName = Buffer.from(parts.subject.bytes);
    const ski = parts.extensions.find((e) => e.oid === OID.subjectKeyIdentifier);
    const keyId = ski ? readOnly(ski.value, 0x04).value : keyIdFromSpki(parts.spki);
    this.#akiExt = seq(oid(OID.authorityKeyIdentifier), octetString(seq(tlv(0x80, keyId))));
  }

  #issue(p: LeafParams): IssuedX509 {
    checkWindow(p.notBefore, p.notAfter);
    const serial = randomSerial();
    const tbs = seq(
      VERSION_V3,
      uintBytes(serial),
      SIG_ALG_ECDSA_SHA256,
      this.#issuerName,
      seq(time(p.notBefore), time(p.notAfter)),
      p.subject,
      p.spki,
      explicit(3, seq(...p.extensions, this.#akiExt)),
    );
    const sig = sign('sha256', tbs, this.#key);
    const der = seq(tbs, SIG_ALG_ECDSA_SHA256, bitString(sig));
    return { pem: derToPem(der, 'CERTIFICATE'), der, serial: serial.toString('hex') };
  }

  /** Client cert for a user: CN = user, one O per role, clientAuth, identity extension. */
  issueUser(req: X509UserCertRequest): IssuedX509 {
    const ext = encodeIdentityExtension(req.identity);
    return this.#issue({
      subject: encodeName([['CN', req.identity.user], ...req.identity.roles.map((r) => ['O', r] as const)]),
      spki: leafSpki(req.publicKeyPem),
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      extensions: [EXT_NOT_CA, EXT_KU_DIGITAL_SIGNATURE, EXT_EKU_CLIENT, seq(OID_IDENTITY, octetString(ext))],
    });
  }

  /** TLS server cert: CN = commonName, O = cluster, serverAuth, SANs (DNS and IP). */
  issueServer(req: X509ServerCertRequest, clusterName: string): IssuedX509 {
    const names: Buffer[] = [];
    for (const d of req.dnsNames) {
      if (!/^[A-Za-z0-9*._-]+$/.test(d))
        throw new GatehouseError('GH_ERR_VALIDATION', `"${d}" is not a DNS name`);
      names.push(tlv(0x82, Buffer.from(d, 'ascii')));
    }
    for (const ip of req.ipAddresses) names.push(tlv(0x87, ipBytes(ip)));
    if (names.length === 0) {
      throw new GatehouseError(
        'GH_ERR_VALIDATION',
        'a server certificate needs at least one DNS name or IP',
        {
          hint: 'Clients match the host name against the SANs; the CN is ignored.',
        },
      );
    }
    return this.#issue({
      subject: encodeName([
        ['CN', req.commonName],
        ['O', clusterName],
      ]),
      spki: leafSpki(req.publicKeyPem),
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      extensions: [
        EXT_NOT_CA,
        EXT_KU_DIGITAL_SIGNATURE,
        EXT_EKU_SERVER,
        seq(oid(OID.subjectAltName), octetString(seq(...names))),
      ],
    });
  }

  /**
   * A gateway's certificate for the internal channel between gateways
   * (decision 0039-gateway-peers): CN = gateway name, O = cluster, server and
   * client auth, and one URI SAN `gatehouse-gateway://<cluster>/<name>` that
   * peers require (nothing else the host CA signs carries it).
   */
  issueGateway(req: X509GatewayCertRequest, clusterName: string): IssuedX509 {
    return this.#issue({
      subject: encodeName([
        ['CN', req.name],
        ['O', clusterName],
      ]),
      spki: leafSpki(req.publicKeyPem),
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      extensions: [
        EXT_NOT_CA,
        EXT_KU_DIGITAL_SIGNATURE,
        EXT_EKU_SERVER_CLIENT,
        seq(
          oid(OID.subjectAltName),
          octetString(seq(tlv(0x86, Buffer.from(gatewayUri(clusterName, req.name), 'ascii')))),
        ),
      ],
    });
  }

  /** Client cert a database trusts: CN = db user, O = cluster, clientAuth. */
  issueDbClient(req: X509DbClientCertRequest, clusterName: string): IssuedX509 {
    if (!req.dbUser) throw new GatehouseError('GH_ERR_VALIDATION', 'dbUser must not be empty');
    return this.#issue({
      subject: encodeName([
        ['CN', req.dbUser],
        ['O', clusterName],
      ]),
      spki: leafSpki(req.publicKeyPem),
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      extensions: [EXT_NOT_CA, EXT_KU_DIGITAL_SIGNATURE, EXT_EKU_CLIENT],
    });
  }
}

/** Reads the structure once more for callers that hold only PEM: subject CN values. */
export function subjectCommonNames(cert: X509Certificate | string | Uint8Array): string[] {
  return commonNames(parseX509(toDer(cert)));
}

/** The URI SAN that marks a gateway certificate of `cluster` (decision 0039-gateway-peers). */
export function gatewayUri(cluster: string, name: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._:-]*$/.test(name) || !/^[a-z0-9][a-z0-9.-]*$/.test(cluster)) {
    throw new GatehouseError('GH_ERR_VALIDATION', `"${name}" is not a gateway name of cluster "${cluster}"`);
  }
  return `gatehouse-gateway://${cluster}/${name}`;
}

/**
 * The gateway name a peer certificate proves for `cluster`, or undefined
 * when it is no gateway certificate of that cluster (a user, node or
 * listener certificate, another cluster's gateway). The chain is the TLS
 * layer's to verify; this reads the one URI SAN.
 */
export function gatewayNameOf(
  cert: { subjectAltName?: string | undefined } | undefined,
  cluster: string,
): string | undefined {
  const prefix = `URI:gatehouse-gateway://${cluster}/`;
  const uris = (cert?.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('URI:'));
  if (uris.length !== 1 || !uris[0]!.startsWith(prefix)) return undefined;
  const name = uris[0]!.slice(prefix.length);
  return /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/.test(name) ? name : undefined;
}
