// The ssh adapter is being written; its factory lands here.
export {};
