/**
 * The audit event catalogue. Every event type has one stable code
 * (GH<number><I|W|E>: info, warning, error). Codes are never reused; a
 * retired type keeps its code reserved here as a comment.
 *
 * Emitters build an `AuditEventInput` (no id/time/code/cluster: the AuditLog
 * fills those in) and call `AuditLog.emit`.
 */

/** Fields every event may carry (shared/DESIGN.md "Audit events"). */
export interface CommonFields {
  /** The acting user (the admin for admin actions, the user for logins); 'system' for the daemon itself. */
  user?: string;
  /** Unix/db/desktop login used, when relevant. */
  login?: string;
  session_id?: string;
  /** The server/resource the event is about (node, db, kube cluster, listener). */
  server?: string;
  addr?: { remote?: string; local?: string };
  /** Free-form human message, indexed for text search. */
  message?: string;
  /**
   * Events a joined node forwarded (it has no audit log of its own): when the
   * node saw it (`time` is when the gateway wrote it, possibly much later
   * after an outage) and its id on the node (`BOOT:SEQ`, unique per node).
   */
  node_time?: string;
  node_event_id?: string;
}

/** Identifies one access request in every access_request.* event (`user` is who acted). */
export interface AccessRequestFields {
  request_id: string;
  /** Who asked for access. */
  requester: string;
  /** The roles asked for (and granted on approval). */
  roles: string[];
  /** Specific resources asked for (`db/orders`), when the request names any. */
  resources?: string[];
}

/** Identifies one database session in every db.session.* event. */
export interface DbSessionFields {
  session_id: string;
  /** The registered database resource name. */
  db_service: string;
  db_protocol: string;
  db_user: string;
  db_name: string;
}

/** A bound parameter the audit record keeps only the start of. */
export interface TruncatedParameter {
  /** Position in `parameters` (0-based). */
  index: number;
  /** Bytes of the whole value as the client sent it. */
  length: number;
  /** SHA-256 (hex) of the whole value as the client sent it. */
  sha256: string;
}

/** Identifies one Kubernetes request or exec session. */
export interface KubeFields {
  /** The registered Kubernetes cluster name. */
  kube_cluster: string;
  /** Whom Gatehouse impersonated upstream. */
  kube_user: string;
  kube_groups: string[];
}

/** What a Kubernetes API request asked for (parsed from its path and method). */
export interface KubeRequestFields {
  /** get, list, watch, create, update, patch, delete, deletecollection, connect, or the raw method for non-resource paths. */
  verb: string;
  /** Resource with subresource, e.g. pods, pods/exec; absent for non-resource paths (/version). */
  resource?: string;
  api_group?: string;
  namespace?: string;
  name?: string;
  method: string;
  path: string;
}

/** Identifies one SSH session (one channel of a user's connection to a node) in every SSH event. */
export interface SshSessionFields {
  session_id: string;
  /** The node name. */
  server: string;
  /** The Unix login on the node. */
  login: string;
}

/** A second person attaching to a live session (`user` is the one who joins). */
export interface SessionJoinFields {
  session_id: string;
  /** ssh, kube, ... (the live session's kind). */
  session_kind: string;
  /** Who owns the session. */
  owner: string;
  /** Node, database or cluster the session runs on. */
  server: string;
  mode: 'observer' | 'peer';
  /**
   * On the gateway that runs the session, for a join relayed from another
   * gateway: that gateway's name (it authorized the joiner and audited the
   * join too).
   */
  via_gateway?: string;
}

/** Why the SSH proxy dropped a connection before any session (bad input, not a role decision). */
export type SshRejectReason =
  | 'malformed'
  | 'handshake_timeout'
  | 'auth_failed'
  | 'unknown_node'
  | 'node_unreachable'
  | 'upstream_auth_failed';

/** Identifies one desktop session in every desktop event. */
export interface DesktopSessionFields {
  session_id: string;
  /** The registered desktop name. */
  server: string;
  /** The Windows login the gateway logs in as. */
  login: string;
}

/** Why the desktop relay refused a request before authorization (bad input, a bad token, not a role decision). */
export type DesktopRejectReason =
  | 'malformed'
  | 'oversized'
  | 'timeout'
  | 'token_invalid'
  | 'destination_mismatch'
  | 'unsupported';

/** Why a database connection was refused before authorization (bad input, not a role decision). */
export type DbRejectReason = 'plaintext' | 'malformed' | 'oversized' | 'timeout' | 'unsupported';

/**
 * How a user logged in: `sso` is a connector (OIDC), named in the event's
 * `connector`; `passwordless` is a passkey (WebAuthn with user verification)
 * alone, named in `mfa_device`.
 */
export type LoginMethod = 'password' | 'invite' | 'reset' | 'sso' | 'passwordless';

/** The second-factor device a login or an MFA change used (never its secret or key). */
export interface MfaDeviceRef {
  /** `totp`: an authenticator app code; `webauthn`: a security key or passkey. */
  method: 'totp' | 'webauthn';
  /** The name its owner gave it. */
  name: string;
  /** Its stable id (`gatehouse mfa ls`). */
  id: string;
}

/** Why an MFA device change was refused. */
export type MfaChangeRefusal =
  | 'last_factor'
  | 'not_found'
  | 'invalid'
  | 'challenge_invalid'
  | 'duplicate'
  | 'limit';

export type LoginFailureReason =
  | 'unknown_user'
  | 'bad_password'
  | 'second_factor_required'
  | 'second_factor_invalid'
  | 'second_factor_reused'
  | 'second_factor_not_enrolled'
  | 'user_locked'
  | 'backoff'
  | 'rate_limited'
  | 'token_invalid'
  | 'token_expired'
  /** SSO: the callback's state is unknown, expired, already used, or not this browser's. */
  | 'sso_state_invalid'
  /** SSO: the identity provider could not be reached (or its discovery document is broken). */
  | 'sso_idp_unavailable'
  /** SSO: the identity provider answered with an error (e.g. the user denied consent). */
  | 'sso_idp_error'
  /** SSO: the ID token failed verification (signature, alg, issuer, audience, expiry, nonce). */
  | 'sso_token_invalid'
  /** SSO: the claims map to no role. */
  | 'sso_no_roles'
  /** SSO: the claims name a user that is not this connector's (a local user, another connector's). */
  | 'sso_user_conflict'
  /** SSO: the one-time code the CLI redeems is unknown, used, expired, or its verifier is wrong. */
  | 'sso_code_invalid'
  /** SSO (SAML): the response failed verification (unsigned, wrapped, wrong key, audience, InResponseTo, time, replay). */
  | 'sso_assertion_invalid'
  /** WebAuthn: the challenge is unknown, expired, already used, or was issued for something else. */
  | 'webauthn_challenge_invalid'
  /** WebAuthn: the credential is not one of this user's (or no user's). */
  | 'webauthn_unknown_credential'
  /** WebAuthn: the assertion failed verification (signature, origin, RP id, user presence/verification). */
  | 'webauthn_invalid'
  /** WebAuthn: the sign counter did not go up (a cloned authenticator, or a replayed assertion). */
  | 'webauthn_counter'
  /** The backend could not be read or written (a shared database down): refused, fail closed. */
  | 'backend_unavailable';

/** What a per-session MFA check was for (role option require_session_mfa): `server` and `login` say the same for nodes. */
export interface SessionMfaFields {
  target_kind: 'node' | 'db' | 'kube' | 'desktop';
  /** The node, database, Kubernetes cluster or desktop. */
  target: string;
  /** The database user (db targets). */
  db_user?: string;
}

export type SessionMfaFailureReason =
  | 'invalid'
  | 'reused'
  | 'no_device'
  | 'unsupported_method'
  /** The challenge is unknown, used already, expired, or another user's (WebAuthn: or another target's). */
  | 'challenge_invalid'
  /** WebAuthn: the sign counter did not go up (a cloned key, or a replayed assertion). */
  | 'counter';

export type ListenerRejectReason =
  | 'unknown_protocol'
  | 'first_byte_timeout'
  | 'handshake_timeout'
  | 'tls_handshake_failed'
  | 'client_cert_untrusted'
  | 'client_cert_invalid'
  | 'too_many_handshakes'
  | 'too_many_handshakes_from_source'
  | 'proxy_protocol_untrusted'
  | 'proxy_protocol_malformed'
  | 'no_route';

export type AuditEventInput =
  | (CommonFields & {
      type: 'user.login';
      success: true;
      method: LoginMethod;
      mfa: boolean;
      client?: string;
      /** The SSO connector (method sso). */
      connector?: string;
      /** The second factor (or the passkey, method passwordless) that was checked. */
      mfa_device?: MfaDeviceRef;
    })
  | (CommonFields & {
      type: 'user.login';
      success: false;
      method: LoginMethod;
      reason: LoginFailureReason;
      error: string;
      connector?: string;
      /** The device that was refused, when it is one of the user's. */
      mfa_device?: MfaDeviceRef;
    })
  /** A user added an MFA device (`user` is who did it, `name` whose device it is). */
  | (CommonFields & { type: 'mfa.add'; success: true; name: string; mfa_device: MfaDeviceRef })
  | (CommonFields & {
      type: 'mfa.add';
      success: false;
      name: string;
      reason: MfaChangeRefusal;
      error: string;
      /** What the device would have been called. */
      device_name?: string;
    })
  | (CommonFields & { type: 'mfa.remove'; success: true; name: string; mfa_device: MfaDeviceRef })
  | (CommonFields & {
      type: 'mfa.remove';
      success: false;
      name: string;
      reason: MfaChangeRefusal;
      error: string;
      mfa_device?: MfaDeviceRef;
    })
  | (CommonFields & { type: 'user.logout' })
  | (CommonFields & { type: 'sso.connector.create'; name: string; kind: 'oidc' | 'github' | 'saml' })
  | (CommonFields &
      SessionMfaFields & {
        type: 'mfa.session';
        success: true;
        /** The device that answered: `totp` or `webauthn`, and its name. */
        method: string;
        device: string;
        /** The same device as user.login names it (with its id). */
        mfa_device: MfaDeviceRef;
      })
  | (CommonFields &
      /** Absent when the challenge answered was unknown (nothing says what it was for). */
      Partial<SessionMfaFields> & {
        type: 'mfa.session';
        success: false;
        /** The method the client answered with, and its device when one was identified. */
        method?: string;
        device?: string;
        mfa_device?: MfaDeviceRef;
        reason: SessionMfaFailureReason;
        error: string;
      })
  | (CommonFields & { type: 'sso.connector.delete'; name: string })
  | (CommonFields & { type: 'user.create'; name: string; roles: string[] })
  | (CommonFields & { type: 'user.update'; name: string; changes: string[] })
  | (CommonFields & { type: 'user.delete'; name: string })
  | (CommonFields & { type: 'user.token.create'; name: string; kind: 'invite' | 'reset'; expires: string })
  | (CommonFields & { type: 'role.create'; name: string })
  | (CommonFields & { type: 'role.update'; name: string })
  | (CommonFields & { type: 'role.delete'; name: string })
  | (CommonFields & {
      type: 'lock.create';
      lock_id: string;
      target: Record<string, string>;
      expires?: string;
    })
  | (CommonFields & { type: 'lock.delete'; lock_id: string; target: Record<string, string> })
  | (CommonFields & AccessRequestFields & { type: 'access_request.create'; reason: string; expires: string })
  | (CommonFields &
      AccessRequestFields & {
        type: 'access_request.review';
        verdict: 'approve' | 'deny';
        reason: string;
        /** The request's state after the review (pending until a threshold is met). */
        state: string;
      })
  | (CommonFields & AccessRequestFields & { type: 'access_request.expire'; expires: string })
  | (CommonFields & AccessRequestFields & { type: 'access_request.drop'; reason: string })
  /** A browser session took on an approved request's roles (a new session replaced the old one). */
  | (CommonFields & AccessRequestFields & { type: 'access_request.assume'; expires: string })
  | (CommonFields & {
      type: 'cert.create';
      cert_type: 'ssh-user' | 'ssh-host' | 'x509-user' | 'x509-server' | 'x509-db' | 'x509-gateway';
      /** The certificate's subject (user name, host name, db user). */
      identity: string;
      serial?: string;
      principals?: string[];
      roles?: string[];
      expires: string;
      route?: Record<string, string>;
    })
  | (CommonFields & { type: 'ca.create'; ca: string; key_id: string })
  | (CommonFields & {
      type: 'ca.rotate';
      /** user, host or db. */
      ca: string;
      /** The phase entered: init, update_clients, update_servers, rollback or standby. */
      phase: string;
      /** The phase left. */
      previous_phase: string;
      mode: 'auto' | 'manual';
      /** Fingerprints of the key that was signing before the rotation (SSH SHA256:..., X.509 SPKI sha256:...). */
      old_key?: { id: string; ssh_fingerprint: string; x509_fingerprint: string };
      /** Fingerprints of the key the rotation introduced. */
      new_key?: { id: string; ssh_fingerprint: string; x509_fingerprint: string };
    })
  | (CommonFields & {
      type: 'listener.reject';
      reason: ListenerRejectReason;
      error: string;
      /**
       * The source block the refusal counts against (203.0.113.7/32,
       * 2001:db8:1:2::/64; listener.per_source_netblock), or '*' once the
       * listener tracks too many sources. Further refusals of the same
       * block, reason and port are counted into a listener.reject.summary.
       */
      source?: string;
    })
  | (CommonFields & {
      type: 'listener.reject.summary';
      reason: ListenerRejectReason;
      /** Refusals this event stands for; none of them has a listener.reject event of its own. */
      count: number;
      /** The source block, or '*': every source past listener.reject_audit.max_sources, merged. */
      source: string;
      /** When the first and the last of them happened (ISO 8601). */
      first_time: string;
      last_time: string;
      /** The last one's message. */
      error: string;
    })
  | (CommonFields & { type: 'http.reject'; method: string; path: string; status: number; error: string })
  | (CommonFields & { type: 'access.denied'; resource_kind: string; resource: string; reason: string })
  | (CommonFields & { type: 'db.create'; name: string; protocol: string; uri: string })
  | (CommonFields & { type: 'db.delete'; name: string })
  | (CommonFields &
      DbSessionFields & {
        type: 'db.session.start';
        success: true;
        /**
         * Set when the session's statements are not recorded one by one (role option
         * `db_audit: sessions`): its start and end are the whole record.
         */
        db_audit?: 'sessions';
      })
  | (CommonFields & DbSessionFields & { type: 'db.session.start'; success: false; error: string })
  | (CommonFields &
      DbSessionFields & {
        type: 'db.session.end';
        duration_ms: number;
        /** Statements run; absent when unknown (the gateway stopped before the session ended). */
        queries?: number;
        /** Why the gateway ended it (expiry, lock, deletion, kill, guard), when it did. */
        reason?: string;
        error?: string;
      })
  | (CommonFields &
      DbSessionFields & {
        type: 'db.session.query';
        /** The statement text; its first `audit.max_query_bytes` bytes when `query_truncated`. */
        query: string;
        /** Set when `query` is only the start of a longer statement. */
        query_truncated?: true;
        /** Bytes of the whole statement text (only when truncated). */
        query_length?: number;
        /** SHA-256 (hex) of the whole statement text as the client sent it (only when truncated). */
        query_sha256?: string;
        /**
         * Bound parameters (extended protocol / prepared statements); '<redacted>' when a role
         * redacts them. A value over `audit.max_parameter_bytes` (or past the statement's budget of
         * `audit.max_query_bytes` for all its values) keeps only its start.
         */
        parameters?: string[];
        /** The parameters that were cut, with their whole length and hash. */
        parameters_truncated?: TruncatedParameter[];
        /** Prepared statement name or id, when the query ran through one. */
        statement?: string;
        /** Rows affected or returned, when the protocol reports it cheaply. */
        rows?: number;
      })
  | (CommonFields &
      DbSessionFields & {
        /**
         * The client switched the session to another database user or name
         * (MySQL COM_CHANGE_USER). `db_user`/`db_name` name where it asked to
         * go; on success every later event of the session carries them.
         */
        type: 'db.session.change_user';
        success: boolean;
        previous_db_user: string;
        previous_db_name: string;
        error?: string;
      })
  | (CommonFields & {
      type: 'db.reject';
      /** Wire protocol (postgres, mysql). */
      protocol: string;
      /** Why the connection was refused before any session started. */
      reason: DbRejectReason;
      error: string;
    })
  | (CommonFields & {
      type: 'db.cancel';
      protocol: string;
      /** True when the cancel key matched a live session and was forwarded. */
      success: boolean;
      error?: string;
    })
  | (CommonFields & { type: 'kube.cluster.create'; name: string })
  | (CommonFields & { type: 'kube.cluster.delete'; name: string })
  | (CommonFields &
      KubeFields &
      KubeRequestFields & {
        type: 'kube.request';
        /** True for a response code below 400. */
        success: boolean;
        response_code: number;
        error?: string;
      })
  | (CommonFields &
      KubeFields &
      KubeRequestFields & {
        type: 'kube.exec.start';
        success: true;
        session_id: string;
        /** The command (exec) or container (attach) the session runs. */
        command: string;
        container?: string;
        tty: boolean;
        recorded: boolean;
      })
  | (CommonFields &
      KubeFields &
      KubeRequestFields & {
        type: 'kube.exec.start';
        success: false;
        session_id: string;
        command: string;
        error: string;
      })
  | (CommonFields &
      KubeFields & {
        type: 'kube.exec.end';
        session_id: string;
        command: string;
        duration_ms: number;
        /** Exit code when the upstream reported one. */
        exit_code?: number;
        /** Why the gateway ended it (lock, expiry, recording failure), when it did. */
        reason?: string;
        error?: string;
      })
  | (CommonFields &
      KubeFields &
      KubeRequestFields & {
        type: 'kube.portforward.end';
        /** The id `gatehouse sessions ls` listed it under (and `sessions kill` takes). */
        session_id: string;
        /** The ports asked for in the URL (WebSocket); SPDY names them per stream inside the tunnel. */
        ports?: string;
        duration_ms: number;
        /** Bytes of the upgraded connection from the client and from the API server (tunnel framing included). */
        bytes_in: number;
        bytes_out: number;
        /** How it ended, when the gateway saw why: client disconnected, lock, expiry. */
        reason?: string;
      })
  | (CommonFields & {
      type: 'desktop.create';
      name: string;
      desktop_addr: string;
      labels: Record<string, string>;
    })
  | (CommonFields & { type: 'desktop.delete'; name: string })
  | (CommonFields &
      DesktopSessionFields & {
        type: 'desktop.session.start';
        success: true;
        /** How the target's TLS certificate was checked: against a CA, a pinned fingerprint, or skipped (insecure_skip_verify). */
        tls_verify: 'ca' | 'fingerprint' | 'skipped';
        /** The security protocol the target selected in its X.224 Connection Confirm (ssl, hybrid, hybrid_ex). */
        security: string;
      })
  | (CommonFields &
      DesktopSessionFields & {
        type: 'desktop.session.start';
        success: false;
        error: string;
      })
  | (CommonFields &
      DesktopSessionFields & {
        type: 'desktop.session.end';
        duration_ms: number;
        /** Bytes from the browser to the desktop and back (plaintext RDP after TLS). */
        bytes_in: number;
        bytes_out: number;
        /** How it ended: client_closed, server_closed, or the gateway's reason (lock, expiry, kill). */
        reason: string;
        error?: string;
      })
  | (CommonFields & {
      type: 'desktop.reject';
      /** The desktop the request named, when it named one. */
      server?: string;
      reason: DesktopRejectReason;
      error: string;
    })
  | (CommonFields & { type: 'node.create'; name: string; addr: string; labels: Record<string, string> })
  | (CommonFields & { type: 'node.delete'; name: string })
  | (CommonFields & SshSessionFields & { type: 'session.start'; success: true })
  | (CommonFields & SshSessionFields & { type: 'session.start'; success: false; error: string })
  | (CommonFields &
      SshSessionFields & {
        type: 'session.end';
        duration_ms: number;
        /** Whether a pty shell or command ran (and was recorded, when `recorded`). */
        interactive: boolean;
        recorded: boolean;
        /** Why the gateway ended it (expiry, lock, kill, recording failure), when it did. */
        reason?: string;
        error?: string;
      })
  | (CommonFields & SessionJoinFields & { type: 'session.join'; success: true })
  | (CommonFields & SessionJoinFields & { type: 'session.join'; success: false; error: string })
  | (CommonFields & SessionJoinFields & { type: 'session.leave'; duration_ms: number })
  | (CommonFields & {
      type: 'session.guard';
      session_id: string;
      /** The live session's protocol (ssh, postgres, mysql, kube-exec…). */
      protocol: string;
      /** The guard that matched (its name, or "<role> guard <n>"). */
      rule: string;
      /** Where: terminal output or input, a database statement or result. */
      on: 'output' | 'input' | 'query' | 'result';
      /** What the gateway did: ended the session, or only recorded the match. */
      action: 'terminate' | 'audit';
      /** Bytes matched. The match itself is never recorded: it may be the secret. */
      match_length: number;
    })
  | (CommonFields &
      SshSessionFields & {
        /** A program a node session started, seen by the kernel (enhanced recording: command). */
        type: 'session.command';
        pid: number;
        ppid: number;
        /** The uid it runs as. */
        uid: number;
        /** The path given to execve. */
        program: string;
        argv: string[];
        /** argv was longer than the kernel side keeps (64 arguments, 2 KiB). */
        argv_truncated?: boolean;
        /** -errno when the exec failed. */
        error_code?: number;
      })
  | (CommonFields &
      SshSessionFields & {
        /** A program of the session exited (enhanced recording: command). */
        type: 'session.command.exit';
        pid: number;
        exit_code?: number;
        /** Signal number that ended it. */
        signal?: number;
      })
  | (CommonFields &
      SshSessionFields & {
        /** A file a node session opened (enhanced recording: disk). */
        type: 'session.open';
        pid: number;
        path: string;
        /** open(2) flags. */
        flags: number;
        /** The file descriptor, or -errno. */
        result: number;
      })
  | (CommonFields &
      SshSessionFields & {
        /** An outbound connection or datagram (enhanced recording: network), or one restrict_network refused (success false). */
        type: 'session.network';
        success: boolean;
        pid: number;
        operation: 'connect' | 'sendmsg';
        protocol: string;
        dst_addr: string;
        dst_port: number;
        /** The restrict_network rule that refused it ("not in allow list" for an allow list). */
        rule?: string;
      })
  | (CommonFields &
      SshSessionFields & {
        /** The kernel could not queue some of the session's enhanced recording events. */
        type: 'session.events_lost';
        /** Lost since the last report, and in all. */
        lost: number;
        total: number;
      })
  | (CommonFields &
      SshSessionFields & {
        /** Enforcement stopped under a running session (the eBPF helper died); the session was ended. */
        type: 'session.enforcement_failed';
        error: string;
      })
  | (CommonFields &
      SshSessionFields & {
        type: 'exec';
        command: string;
        /** Exit code, or absent when the command ended by a signal (then `signal`). */
        exit_code?: number;
        signal?: string;
        error?: string;
      })
  | (CommonFields &
      SshSessionFields & {
        type: 'port_forward';
        success: boolean;
        /** local (-L, -D: client asks the node side to connect) or remote (-R: the node side listens). */
        direction: 'local' | 'remote';
        /** Where the connection goes (local) or the listen address (remote), host:port. */
        target: string;
        /** The originator the client reported, host:port. */
        origin?: string;
        error?: string;
      })
  | (CommonFields &
      SshSessionFields & {
        /** The client asked to forward its ssh-agent to the node (`ssh -A`): granted, or refused and why. */
        type: 'agent_forward';
        success: boolean;
        error?: string;
      })
  | (CommonFields &
      SshSessionFields & {
        type: 'sftp';
        /** read (download), write (upload), or a metadata action. */
        action: 'read' | 'write' | 'remove' | 'rename' | 'mkdir' | 'rmdir' | 'setstat';
        path: string;
        /** Bytes read or written through the handle (read/write). */
        bytes?: number;
        /** Destination path of a rename. */
        target?: string;
        error?: string;
      })
  | (CommonFields & { type: 'ssh.reject'; reason: SshRejectReason; error: string })
  | (CommonFields & {
      type: 'node.join_token.create';
      expires: string;
      /** First 12 hex digits of the token's SHA-256 (the token itself is never logged). */
      token_id: string;
    })
  | (CommonFields & {
      type: 'node.join';
      success: true;
      name: string;
      /** host:port the gateway will dial. */
      node_addr: string;
      labels: Record<string, string>;
    })
  | (CommonFields & { type: 'node.join'; success: false; name: string; error: string })
  | (CommonFields & {
      /**
       * A node's request to renew its host certificate with its current one
       * was refused (`server`: the node it claimed to be); e.g. a certificate
       * from a host CA key a rotation removed while the node was away.
       */
      type: 'node.renew_refused';
      error: string;
    })
  | (CommonFields & {
      /**
       * A joined node's forwarded audit events were refused: the whole batch
       * (`server` is the name the certificate claimed, or absent) or one event
       * of it (`node_event_id` set).
       */
      type: 'node.audit_refused';
      reason: string;
      /** The unverified key id of a certificate that was refused (then `server` is absent). */
      claimed_node?: string;
      /** How many events the refusal covers. */
      events: number;
    })
  | (CommonFields & { type: 'gateway.start'; version: string; listen: string[] })
  | (CommonFields & { type: 'gateway.stop' })
  | (CommonFields & {
      /** SIGHUP: the config was read again; what took effect, and what waits for a restart. */
      type: 'gateway.reload';
      success: true;
      source: string;
      applied: string[];
      restart_required: string[];
    })
  | (CommonFields & {
      /** SIGHUP with a config that could not be used: the running one stays. */
      type: 'gateway.reload';
      success: false;
      source: string;
      error: string;
    })
  | (CommonFields & { type: 'audit.backlog'; sink: string; backlog: number; error: string })
  | (CommonFields & {
      type: 'audit.retention.delete';
      /** The event files removed (and their signed heads). */
      files: string[];
      /** Why: the configured retention, e.g. "audit.retention 400d". */
      reason: string;
      /** Files older than this day (UTC) were removed. */
      before: string;
      /** Where the kept chain now starts (audit verify begins there). */
      anchor: string;
    })
  | (CommonFields & {
      type: 'recording.delete';
      /** The recording's session. */
      session_id: string;
      /** Whose session it was, and what it was. */
      recording_user: string;
      kind: string;
      started: string;
      /** `gatehouse recordings rm --reason`, or the retention rule. */
      reason: string;
    })
  | (CommonFields & {
      type: 'audit.dropped';
      sink: string;
      /** Events this sink never got: the disk could not take them and the memory bound was reached. */
      lost: number;
    })
  // Export sinks (syslog, Loki, Elasticsearch, webhook): alarms about their spool and receiver.
  | (CommonFields & {
      type: 'audit.sink.backlog';
      sink: string;
      /** Events waiting in the sink's spool. */
      queued: number;
      queued_bytes: number;
      max_bytes: number;
      /** How full the spool is (the alarm fires when the receiver fails, and at 50% and 90%). */
      percent: number;
      /** The receiver's last error ('' when it is merely slower than the event rate). */
      error: string;
    })
  | (CommonFields & {
      type: 'audit.sink.full';
      sink: string;
      on_full: 'block' | 'drop_oldest';
      queued: number;
      max_bytes: number;
      error: string;
    })
  | (CommonFields & {
      type: 'audit.sink.dropped';
      sink: string;
      /** Oldest events dropped this time (on_full: drop_oldest). */
      dropped: number;
      /** Dropped since the process started. */
      dropped_total: number;
      error: string;
    })
  | (CommonFields & {
      type: 'audit.sink.rejected';
      sink: string;
      /** Events the receiver refused for good (not retried). */
      rejected: number;
      /** Their ids (at most 20). */
      ids: string[];
      /** The receiver's status for the first one (HTTP status, or 'too_large'). */
      status: string;
      error: string;
    })
  | (CommonFields & { type: 'audit.sink.recovered'; sink: string });

export type AuditEventType = AuditEventInput['type'];

/**
 * Code per type. Success/failure variants of one type get different codes
 * (user.login success GH1000I, failure GH1001W) through `codeFor`.
 */
export const EVENT_CODES = {
  'user.login': { ok: 'GH1000I', fail: 'GH1001W' },
  'user.logout': 'GH1002I',
  'mfa.session': { ok: 'GH1003I', fail: 'GH1003W' },
  'sso.connector.create': 'GH1090I',
  'sso.connector.delete': 'GH1091I',
  'user.create': 'GH1010I',
  'user.update': 'GH1011I',
  'user.delete': 'GH1012I',
  'user.token.create': 'GH1013I',
  'mfa.add': { ok: 'GH1015I', fail: 'GH1015W' },
  'mfa.remove': { ok: 'GH1016I', fail: 'GH1016W' },
  'role.create': 'GH1020I',
  'role.update': 'GH1021I',
  'role.delete': 'GH1022I',
  'lock.create': 'GH1030I',
  'lock.delete': 'GH1031I',
  'access_request.create': 'GH1032I',
  'access_request.review': 'GH1033I',
  'access_request.expire': 'GH1034I',
  'access_request.drop': 'GH1035I',
  'access_request.assume': 'GH1036I',
  'cert.create': 'GH1040I',
  'ca.create': 'GH1041I',
  'ca.rotate': 'GH1042I',
  'listener.reject': 'GH1100W',
  'http.reject': 'GH1101W',
  'access.denied': 'GH1102W',
  'listener.reject.summary': 'GH1103W',
  'db.create': 'GH1050I',
  'db.delete': 'GH1051I',
  'db.session.start': { ok: 'GH2000I', fail: 'GH2000W' },
  'db.session.end': 'GH2001I',
  'db.session.query': 'GH2002I',
  'db.session.change_user': { ok: 'GH2003I', fail: 'GH2003W' },
  'db.reject': 'GH2010W',
  'db.cancel': { ok: 'GH2011I', fail: 'GH2011W' },
  'kube.cluster.create': 'GH1060I',
  'kube.cluster.delete': 'GH1061I',
  'kube.request': { ok: 'GH2200I', fail: 'GH2200W' },
  'kube.exec.start': { ok: 'GH2201I', fail: 'GH2201W' },
  'kube.exec.end': 'GH2202I',
  'kube.portforward.end': 'GH2203I',
  'desktop.create': 'GH1080I',
  'desktop.delete': 'GH1081I',
  'desktop.session.start': { ok: 'GH2300I', fail: 'GH2300W' },
  'desktop.session.end': 'GH2301I',
  'desktop.reject': 'GH2310W',
  'node.create': 'GH1070I',
  'node.delete': 'GH1071I',
  'session.start': { ok: 'GH2100I', fail: 'GH2100W' },
  'session.end': 'GH2101I',
  exec: 'GH2102I',
  port_forward: { ok: 'GH2103I', fail: 'GH2103W' },
  sftp: 'GH2104I',
  'ssh.reject': 'GH2105W',
  'session.join': { ok: 'GH2106I', fail: 'GH2106W' },
  'session.leave': 'GH2107I',
  'session.guard': 'GH2108W',
  agent_forward: { ok: 'GH2109I', fail: 'GH2109W' },
  'session.command': 'GH2110I',
  'session.command.exit': 'GH2111I',
  'session.open': 'GH2112I',
  'session.network': { ok: 'GH2113I', fail: 'GH2113W' },
  'session.events_lost': 'GH2114W',
  'session.enforcement_failed': 'GH2115E',
  'node.join': { ok: 'GH1072I', fail: 'GH1072W' },
  'node.join_token.create': 'GH1073I',
  'node.audit_refused': 'GH1074W',
  'node.renew_refused': 'GH1075W',
  'gateway.start': 'GH1200I',
  'gateway.stop': 'GH1201I',
  'gateway.reload': { ok: 'GH1202I', fail: 'GH1202W' },
  'audit.backlog': 'GH1210E',
  'audit.dropped': 'GH1211E',
  'audit.sink.backlog': 'GH1220W',
  'audit.sink.full': 'GH1221E',
  'audit.sink.dropped': 'GH1222E',
  'audit.sink.rejected': 'GH1223E',
  'audit.sink.recovered': 'GH1224I',
  'audit.retention.delete': 'GH1212I',
  'recording.delete': 'GH1213I',
} as const satisfies Record<AuditEventType, string | { ok: string; fail: string }>;

export function codeFor(e: AuditEventInput): string {
  const c = EVENT_CODES[e.type];
  if (typeof c === 'string') return c;
  return 'success' in e && e.success === false ? c.fail : c.ok;
}

/** A stored event: the input plus what the AuditLog fills in. */
export type AuditEvent = AuditEventInput & {
  id: string;
  /** ISO 8601 with milliseconds, UTC. */
  time: string;
  code: string;
  cluster: string;
  /**
   * The hash-chain link the JSON-lines record gave this event (decision
   * 0029): its line number over all files and the SHA-256 of the line before.
   * Set once the record is written; exported copies carry it.
   */
  chain?: { seq: number; prev: string };
};
