// The k8s adapter is being written; its factory lands here.
export {};
