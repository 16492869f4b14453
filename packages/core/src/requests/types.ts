/** Access request states; only `pending` and `approved` may still change (see service.ts). */
export type AccessRequestState = 'pending' | 'approved' | 'denied' | 'expired' | 'dropped';

export type ReviewVerdict = 'approve' | 'deny';

/** One reviewer's verdict on a request. */
export interface AccessRequestReview {
  author: string;
  verdict: ReviewVerdict;
  reason: string;
  /** ISO time of the review. */
  time: string;
}

/** A resource asked for by name (`db/orders`), reached through `search_as_roles`. */
export interface RequestedResource {
  kind: 'db' | 'node' | 'kube' | 'desktop';
  name: string;
}

/** An access request as stored (`access_requests/<id>`, JSON) and as the API shows it. */
export interface AccessRequestView {
  id: string;
  /** Who asked. */
  user: string;
  /** Roles the request grants once approved (for a resource request: the search_as_roles that reach it). */
  roles: string[];
  /** With resources, the roles apply to these resources only. */
  resources?: RequestedResource[] | undefined;
  reason: string;
  state: AccessRequestState;
  /** Reviews needed to approve or to deny. */
  thresholds: { approve: number; deny: number };
  reviews: AccessRequestReview[];
  /** ISO times: when it was made, and when the access it gives ends (pending ones expire then too). */
  created: string;
  expires: string;
  /** When and by whom it reached its final state (approved, denied, dropped, expired). */
  resolved?: { time: string; by: string; reason?: string | undefined } | undefined;
}

/** `gatehouse request create`: whole roles, or resources by name, for `ttl` (default 1h). */
export interface CreateAccessRequest {
  roles?: string[] | undefined;
  resources?: string[] | undefined;
  reason?: string | undefined;
  ttl?: string | undefined;
  /** The local operator only: whom the request is for (a user asks for themselves). */
  user?: string | undefined;
}

export interface ReviewAccessRequest {
  verdict: ReviewVerdict;
  reason?: string | undefined;
}

/** Certificates with the roles of approved requests (`gatehouse login --request-id`). */
export interface RequestCertsRequest {
  request_ids: string[];
  ssh_public_key?: string | undefined;
  tls_public_key?: string | undefined;
}

/** What changed a request, as the watch route names it (the audit event of the same name). */
export type AccessRequestChangeType =
  | 'access_request.create'
  | 'access_request.review'
  | 'access_request.expire'
  | 'access_request.drop';

/**
 * One change on the watch route (`GET /v1/requests/watch`, server-sent
 * events): the request as it is after the change, and the backend revision
 * of that write, which is the cursor a watcher resumes from (`?after=`).
 */
export interface AccessRequestChange {
  cursor: number;
  type: AccessRequestChangeType;
  request: AccessRequestView;
}
