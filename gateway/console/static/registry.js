// Why: registrars and admins manage people, their faces and their grants, and admins keys and the
// policy, from the console (filled in by the registrar/admin views).
export const views = [];
