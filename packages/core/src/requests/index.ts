export { decideRequest, mayReview, type RequestDecision, type RequestPolicy } from './policy.js';
export {
  ACCESS_REQUESTS_PREFIX,
  AccessRequestService,
  type AccessRequestServiceOptions,
  parseResource,
  type RequestGrant,
  type Reviewer,
} from './service.js';
export * from './types.js';
